"""Algebraic identities. Each rule's identity is the comment above it; the engine checks that
the replacement has the replaced value's type, so `x * 1 -> x` never drops a broadcast."""
from __future__ import annotations

from typing import Optional

from ..rewrite import Const, Match, Op, Rule, Var, scalar_value


class _Identity(Rule):
    """`op(x, c) -> x` when the constant `c` is `unit`."""
    unit = 0.0

    def check(self, m: Match) -> Optional[str]:
        if scalar_value(m["c"]) != self.unit:
            return f"the constant is not {self.unit:g}"
        if m["x"].type.axes != m.nodes[0].outputs[0].type.axes:
            return "the constant broadcasts `x` to other axes"
        return None

    def rewrite(self, m, b):
        return m["x"]


# x * 1 -> x   (and 1 * x)
class MulByOne(_Identity):
    name, pattern, unit = "mul-by-one", Op("mul", Var("x"), Const("c")), 1.0


# x / 1 -> x
class DivByOne(_Identity):
    name, pattern, unit = "div-by-one", Op("div", Var("x"), Const("c")), 1.0


# x + 0 -> x   (and 0 + x)
class AddZero(_Identity):
    name, pattern, unit = "add-zero", Op("add", Var("x"), Const("c")), 0.0


# x - 0 -> x
class SubZero(_Identity):
    name, pattern, unit = "sub-zero", Op("sub", Var("x"), Const("c")), 0.0


# rename(rename(x, a -> b), b -> c) -> rename(x, a -> c); identity renames vanish
class RenameChain(Rule):
    name, pattern = "rename-chain", Op("rename", Op("rename", Var("x")))

    def rewrite(self, m, b):
        x = m["x"]
        outer, inner = m.nodes[0], m.nodes[1]
        first = dict(inner.attrs["mapping"])
        second = dict(outer.attrs["mapping"])
        mapping = tuple((a, second.get(first.get(a, a), first.get(a, a))) for a in x.type.names)
        mapping = tuple((a, c) for a, c in mapping if a != c)
        return b.emit1("rename", [x], mapping=mapping) if mapping else x


# rename(x, a -> a) -> x
class RenameIdentity(Rule):
    name, pattern = "rename-identity", Op("rename", Var("x"))

    def check(self, m):
        return None if all(a == c for a, c in m.nodes[0].attrs["mapping"]) else "it renames"

    def rewrite(self, m, b):
        return m["x"]


# transpose(transpose(x)) -> transpose(x), or x when the orders cancel
class TransposeChain(Rule):
    name, pattern = "transpose-chain", Op("transpose", Op("transpose", Var("x")))

    def rewrite(self, m, b):
        return b.transpose(m["x"], m.nodes[0].attrs["order"])


# transpose(x) to x's own order -> x
class TransposeIdentity(Rule):
    name, pattern = "transpose-identity", Op("transpose", Var("x"))

    def check(self, m):
        return None if tuple(m.nodes[0].attrs["order"]) == m["x"].type.names else "it reorders"

    def rewrite(self, m, b):
        return m["x"]


# -(-x) -> x
class NegNeg(Rule):
    name, pattern = "neg-neg", Op("neg", Op("neg", Var("x")))

    def rewrite(self, m, b):
        return m["x"]


RULES = [MulByOne(), DivByOne(), AddZero(), SubZero(), RenameChain(), RenameIdentity(), TransposeChain(),
         TransposeIdentity(), NegNeg()]
