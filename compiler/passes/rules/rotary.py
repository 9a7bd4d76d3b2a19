"""Rotary position embeddings: the halves of a head turned by per-position angles become one
`rotary` op (compiler/ops/rotary.py).

    x1, x2 = unstack(x over two)
    stack(x1 * cos - x2 * sin, x2 * cos + x1 * sin over two)  ->  rotary(x, cos, sin; pair=two)

with the products and the sum in any operand order. x1 and x2 must be slices 0 and 1 of
one `unstack` over the axis the result is stacked over (LLaMA's `rotate_half` halves). The
`unstack` stays outside the match: x may be read elsewhere, and `check` reads it.

Cases: 1. the identity above (fires); declined: 2. the halves come from two unstacks, in
the wrong order, or over another axis than the stack; 3. the cosines or sines carry axes
the halves lack (the products would broadcast); 4. cosines and sines of different axes;
5. integer operands; 6. a product, the difference or the sum also read elsewhere (the
engine's check).
"""
from __future__ import annotations

from typing import Optional

from ...axes import FLOAT_DTYPES
from ...ir import Value
from ..rewrite import Match, Op, Pattern, Rule, Var


class Slice(Var):
    """A value some `unstack` made. Requiring it of the halves tells them from the tables in a
    product written either way round (`cos * x1`), since the engine does not backtrack into
    a sibling operand once one order has matched."""

    def match(self, v: Value, m: Match) -> bool:
        if v.producer is None or v.producer.op != "unstack":
            return m.fail(f"`{self.name}` is not a slice of an `unstack`")
        return super().match(v, m)


def _turn(first: Pattern, second: Pattern) -> tuple[Op, Op]:
    return Op("mul", first, Var("cos")), Op("mul", second, Var("sin"))


# stack(x1*cos - x2*sin, x2*cos + x1*sin over pair) -> rotary(x, cos, sin; pair)   (x1, x2 = unstack(x over pair))
class FuseRotary(Rule):
    name, explain_misses = "rotary", True
    pattern = Op("stack", Op("sub", *_turn(Slice("x1"), Slice("x2"))), Op("add", *_turn(Slice("x2"), Slice("x1"))))

    def check(self, m: Match) -> Optional[str]:
        x1, x2 = m["x1"], m["x2"]
        unstack, pair = x1.producer, m.nodes[0].attrs["axis"].name
        if x2.producer is not unstack:
            return "the two halves come from different `unstack`s"
        if unstack.attrs["axis"] != pair:
            return f"the halves are unstacked over `{unstack.attrs['axis']}` but stacked over `{pair}`"
        if unstack.attrs["count"] != 2:
            return f"the `unstack` over `{pair}` makes {unstack.attrs['count']} slices, not a pair"
        if (unstack.outputs.index(x1), unstack.outputs.index(x2)) != (0, 1):
            return "the halves are swapped: the first term turns the `unstack`'s second slice"
        cos, sin = m["cos"].type, m["sin"].type
        extra = [a for a in dict.fromkeys(cos.names + sin.names) if not x1.type.has(a)]
        if extra:
            return f"the cosines or sines carry {', '.join(f'`{a}`' for a in extra)}, which the halves lack"
        if not cos.same_axes(sin):
            return f"the cosines {cos.describe()} and the sines {sin.describe()} have different axes"
        if x1.type.dtype not in FLOAT_DTYPES:
            return f"the halves are {x1.type.dtype}, not floating-point"
        return None

    def rewrite(self, m, b):
        return b.emit1("rotary", [m["x1"].producer.inputs[0], m["cos"], m["sin"]],
                       pair=m.nodes[0].attrs["axis"].name)


RULES = [FuseRotary()]
