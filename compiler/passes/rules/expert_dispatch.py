"""Mixtures of experts: a contraction with expert weights gathered by a routing index becomes
one `expert_linear` op (compiler/ops/expert.py), which groups the rows by expert instead of
copying an expert's weights for every row.

    x @ gather(w, idx over expert) over k  ->  expert_linear(x, w, idx; axis=expert, axes=k)

in either operand order (the other order's result is the same wires, transposed back). The
rows are the index's positions: `x` may carry only index axes besides `k` (a first expert
layer's `x` lacks `slot`, a second one's `h` has it), `k` must not be an index axis (that
would sum across routed rows), and the weights' other axes must not meet `x`. Lookups that
are no mixture stay as written: a table without output axes (an embedding row dotted with
`x`, whose gathered rows are no bigger than `x`'s) and one past MAX_EXPERTS entries.

A routed expert MLP then becomes one `expert_mlp`, which groups the rows once for all its
layers (the hidden activations stay in expert order):

    expert_linear(act(expert_linear(x, w_gate, idx)) * expert_linear(x, w_up, idx), w_down, idx)
        -> expert_mlp(x, w_gate, w_up, w_down, idx; act)        (SwiGLU, GeGLU: Mixtral's experts)
    expert_linear(act(expert_linear(x, w_in, idx)), w_down, idx) -> expert_mlp(x, w_in, w_down, idx; act)

with `act` one of gated_linear's activations, one index tensor throughout, and the down
layer contracting exactly the hidden axes.

The gather is read, not swallowed: where something else also reads the gathered weights
(common-subexpression elimination merges two equal gathers; a contraction this rule declines),
the contraction is still dispatched and the gather stays for its other readers; once none
is left, dead-code elimination drops it.
"""
from __future__ import annotations

from typing import Optional

from ...ir import Value
from ...ops.expert import check_structure
from ...ops.gated import ACTIVATIONS
from ..rewrite import Either, Match, Op, Pattern, Rule, Var


class Gathered(Pattern):
    """A value computed by `gather`: binds `gather` (the node), `w` and `idx`. The node is not
    part of the match, so readers outside it do not make the engine decline."""

    def match(self, v: Value, m: Match) -> bool:
        node = v.producer
        if node is None or node.op != "gather":
            return m.fail(f"expected `gather`, found {'an input' if node is None else f'`{node.op}`'}")
        m.bound["gather"], (m.bound["w"], m.bound["idx"]) = node, node.inputs
        return True


# x @ gather(w, idx over expert) over k -> expert_linear(x, w, idx; axis=expert, axes=k)
class DispatchExperts(Rule):
    name, explain_misses = "expert-dispatch", True
    pattern = Op("contract", Var("x"), Gathered())

    def check(self, m: Match) -> Optional[str]:
        w, axis, k = m["w"].type, m["gather"].attrs["axis"], tuple(m.nodes[0].attrs["axes"])
        if all(n == axis or n in k for n in w.names):
            # an embedding lookup dotted with x: the gathered rows are no bigger than x's
            return "each gathered slice is a vector (the weights have no output axes): gathering costs no more"
        return check_structure(m["x"].type, w, m["idx"].type, axis, k)

    def rewrite(self, m, b):
        return b.emit1("expert_linear", [m["x"], m["w"], m["idx"]], axis=m["gather"].attrs["axis"],
                       axes=tuple(m.nodes[0].attrs["axes"]))


# gather(w, idx over expert) @ x over k -> the same (the engine transposes to the root's order)
class DispatchExpertsLeft(DispatchExperts):
    pattern = Op("contract", Gathered(), Var("x"))


def _routed(w: str, role: str) -> Op:
    return Op("expert_linear", Var("x"), Var(w), Var("idx"), name=role)


_activated = Either(*(Op(act, _routed("w_gate", "gate"), name="act") for act in ACTIVATIONS))


# expert_linear(act(expert_linear(x, wg, idx)) * expert_linear(x, wu, idx), wd, idx) -> expert_mlp(x, wg, wu, wd, idx)
class RouteGatedMlpOnce(Rule):
    name, explain_misses = "expert-mlp", True
    pattern = Op("expert_linear", Op("mul", _activated, _routed("w_up", "up")), Var("w_down"), Var("idx"))

    def check(self, m: Match) -> Optional[str]:
        wg, wu = m["w_gate"].type, m["w_up"].type
        if m["gate"].attrs != m["up"].attrs:
            return "the gate and up layers contract different axes"
        if not wg.same_axes(wu) or wg.dtype != wu.dtype:
            return f"the gate weights {wg.describe()} and the up weights {wu.describe()} differ"
        return _down_reads_hidden(m)

    def rewrite(self, m, b):
        return _emit(m, b, [m["w_gate"], m["w_up"]])


# expert_linear(act(expert_linear(x, w, idx)), wd, idx) -> expert_mlp(x, w, wd, idx)
class RouteMlpOnce(RouteGatedMlpOnce):
    pattern = Op("expert_linear", _activated, Var("w_down"), Var("idx"))

    def check(self, m: Match) -> Optional[str]:
        return _down_reads_hidden(m)

    def rewrite(self, m, b):
        return _emit(m, b, [m["w_gate"]])


def _down_reads_hidden(m: Match) -> Optional[str]:
    gate, down = m["gate"].attrs, m.nodes[0].attrs
    if gate["axis"] != down["axis"]:
        return "the down layer picks its experts along another axis"
    hidden = [n for n in m["w_gate"].type.names if n != gate["axis"] and n not in gate["axes"]]
    if sorted(hidden) != sorted(down["axes"]):
        return f"the down layer contracts {', '.join(down['axes'])}, not the hidden axes {', '.join(hidden)}"
    return None


def _emit(m: Match, b, first: list) -> Value:
    gate = m["gate"].attrs
    return b.emit1("expert_mlp", [m["x"], *first, m["w_down"], m["idx"]], axis=gate["axis"], axes=tuple(gate["axes"]),
                   hidden=tuple(m.nodes[0].attrs["axes"]), act=m["act"].op)


RULES = [DispatchExperts(), DispatchExpertsLeft(), RouteGatedMlpOnce(), RouteMlpOnce()]
