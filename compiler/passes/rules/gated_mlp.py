"""Gated MLPs: the gate and up projections of one input and the gating product become one
`gated_linear` op (compiler/ops/gated.py), which runs both projections as one MatMul.

    act(x @ w_gate) * (x @ w_up)  ->  gated_linear(x, w_gate, w_up; axes, act)

with `act` silu (SwiGLU, LLaMA's MLP), gelu or gelu_tanh (GeGLU), relu or sigmoid, the
projections bias-free `linear` nodes (as fuse-linear leaves them) of the same input over
the same axes, with weights of the same axes; both may pass through the same rename (a
`Linear` block's `dout` renamed to the model's `inter`), which the replacement keeps.
"""
from __future__ import annotations

from typing import Optional

from ...ops.gated import ACTIVATIONS
from ..rewrite import Either, Match, Op, Rule, Var


def _projection(w: str, role: str) -> Either:
    dense = Either(Op("linear", Var("x"), Var(w), name=role),
                   Op("linear", Var("x"), Var(w), Var(f"{role}_bias"), name=role))  # declined in check
    return Either(Op("rename", dense, name=f"{role}_rename"), dense)


_gate = _projection("w_gate", "gate")


# act(x @ w_gate) * (x @ w_up) -> gated_linear(x, w_gate, w_up; act)   (either operand order, through renames)
class FuseGatedMlp(Rule):
    name, explain_misses = "gated-mlp", True
    pattern = Op("mul", Either(*(Op(act, _gate, name="act") for act in ACTIVATIONS)), _projection("w_up", "up"))

    def check(self, m: Match) -> Optional[str]:
        wg, wu = m["w_gate"].type, m["w_up"].type
        for role in ("gate", "up"):
            if f"{role}_bias" in m.bound:
                return f"the {role} projection has a bias"
        if not wg.same_axes(wu) or wg.dtype != wu.dtype:
            return f"the gate weight {wg.describe()} and the up weight {wu.describe()} differ"
        if m["gate"].attrs["axes"] != m["up"].attrs["axes"]:
            return "the gate and up projections contract different axes"
        gate_rename, up_rename = m.get("gate_rename"), m.get("up_rename")
        if (gate_rename and gate_rename.attrs["mapping"]) != (up_rename and up_rename.attrs["mapping"]):
            return "the gate and up projections are renamed differently"
        if m["act"].outputs[0].type != m.nodes[0].outputs[0].type:
            return "the gating product broadcasts"
        return None

    def rewrite(self, m, b):
        y = b.emit1("gated_linear", [m["x"], m["w_gate"], m["w_up"]], axes=m["gate"].attrs["axes"],
                    act=m["act"].op)
        rename = m.get("gate_rename")
        return b.emit1("rename", [y], mapping=rename.attrs["mapping"]) if rename is not None else y


RULES = [FuseGatedMlp()]
