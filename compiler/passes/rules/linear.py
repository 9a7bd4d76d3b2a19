"""Dense layers: a contraction with a weight, and its bias, become one `linear` node.

The weight must be a parameter that shares only the contracted axes with the input (a
weight sharing a kept axis, as per-expert weights do, is a batched product: it stays a
`contract`). The bias must be a parameter over the weight's output axes, so that it is
one vector added to every row. See compiler/ops/linear.py for the lowering.
"""
from __future__ import annotations

from typing import Optional

from ..rewrite import Match, Op, Rule, Var


def _param(v) -> bool:
    return v.producer is not None and v.producer.op == "param"


# contract(x, w over k) -> linear(x, w; axes=k)   when w is a parameter sharing only k with x
class ContractToLinear(Rule):
    name, pattern, explain_misses = "contract-to-linear", Op("contract", Var("x"), Var("w")), True

    def check(self, m: Match) -> Optional[str]:
        x, w, k = m["x"], m["w"], m.nodes[0].attrs["axes"]
        if not _param(w):
            return "the right operand is not a parameter"
        shared = [n for n in w.type.names if n not in k and x.type.has(n)]
        if shared:
            return f"the weight shares `{shared[0]}` with the input (a batched product)"
        return None

    def rewrite(self, m, b):
        return b.emit1("linear", [m["x"], m["w"]], axes=m.nodes[0].attrs["axes"])


# linear(x, w) + b -> linear(x, w, b)   (and b + linear(x, w)) when b is a parameter over w's outputs
class LinearBias(Rule):
    name, explain_misses = "linear-bias", True
    pattern = Op("add", Op("linear", Var("x"), Var("w"), name="mm"), Var("b"))

    def check(self, m: Match) -> Optional[str]:
        mm, bias = m["mm"], m["b"]
        if not _param(bias):
            return "the added term is not a parameter"
        outputs = [n for n in m["w"].type.names if n not in mm.attrs["axes"]]
        extra = [n for n in bias.type.names if n not in outputs]
        if extra:
            return f"the added term carries `{extra[0]}`, which is not an output axis of the weight"
        if bias.type.dtype != mm.outputs[0].type.dtype:
            return "the added term has another dtype"
        return None

    def rewrite(self, m, b):
        return b.emit1("linear", [m["x"], m["w"], m["b"]], axes=m["mm"].attrs["axes"])


RULES = [ContractToLinear(), LinearBias()]
