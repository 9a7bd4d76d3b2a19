"""Residual add + normalisation: the sum and its norm become one two-result op
(compiler/ops/add_norm.py), whose second result serves every other read of the sum.

    layernorm(a + b, w, bias over d)  ->  add_layernorm(a, b, w, bias; axes=(d,))[0]
    rmsnorm(a + b, w over d)          ->  add_rmsnorm(a, b, w; axes=(d,))[0]
    and every other use of a + b      ->  its [1]

A block boundary usually renames the stream between the add and the norm (`embed` -> the
norm block's `d`): the rule matches through that rename, renames the addends instead and
renames the shared sum back. The root pattern names only the norm's first operand; its
affine parameters are read from the node (the engine matches a root's listed operands).
"""
from __future__ import annotations

from ..rewrite import Either, Op, Rule, Var

_sum = Op("add", Var("a"), Var("b"), name="sum")
_input = Either(Op("rename", _sum, name="rename"), _sum)


def _inverse(mapping) -> tuple:
    return tuple((new, old) for old, new in mapping)


# norm(a + b) -> add_norm(a, b)[0];  a + b elsewhere -> add_norm(a, b)[1]   (also through a rename)
class FuseResidualNorm(Rule):
    explain_misses = True
    shares_interior = ("sum",)

    def __init__(self, norm: str):
        self.norm, self.fused = norm, f"add_{norm}"
        self.name = f"residual-{norm}"
        self.pattern = Op(norm, _input, name="norm")

    def rewrite(self, m, b):
        norm = m["norm"]
        x, y = m["a"], m["b"]
        rename = m.get("rename")
        if rename is not None:
            mapping = dict(rename.attrs["mapping"])
            x, y = (b.emit1("rename", [v], mapping=tuple((k, n) for k, n in mapping.items() if v.type.has(k)))
                    if any(v.type.has(k) for k in mapping) else v for v in (x, y))
        out, s = b.emit(self.fused, [x, y] + norm.inputs[1:], **norm.attrs)
        if rename is not None:
            s = b.emit1("rename", [s], mapping=_inverse(rename.attrs["mapping"]))
        b.share(m["sum"].outputs[0], s)
        return out


RULES = [FuseResidualNorm("layernorm"), FuseResidualNorm("rmsnorm")]
