"""Contraction: einsum over named axes.

`a @ b over k` sums the product over the axes `k`; axes both operands carry but `over`
does not name are batch axes (kept, matched by name); the rest are kept from each side.
The result's axes are `a`'s kept axes in order, then `b`'s new ones.
"""
from __future__ import annotations

import string

from ..axes import FLOAT_DTYPES, INT_DTYPES, TensorType
from ..diagnostics import error
from .registry import OpDef, check_same_sizes, register, require_axes, same_dtype


def contract_axes(a: TensorType, b: TensorType, over: tuple[str, ...]) -> tuple:
    kept = [x for x in a.axes if x.name not in over]
    new = [x for x in b.axes if x.name not in over and not a.has(x.name)]
    return tuple(kept + new)


def einsum_spec(a: TensorType, b: TensorType, out: TensorType) -> str:
    letters: dict[str, str] = {}
    for name in a.names + b.names:
        letters.setdefault(name, string.ascii_letters[len(letters)])
    word = lambda t: "".join(letters[n] for n in t.names)
    return f"{word(a)},{word(b)}->{word(out)}"


@register
class Contract(OpDef):
    name = "contract"
    summary = "`a @ b over k`: multiply and sum over the named axes (einsum by name)"
    example = "y = (q @ k over head)"
    surface = False  # spelled `@`

    def infer(self, ins, attrs, span):
        a, b = ins
        over = attrs["axes"]
        require_axes(a, over, "the left operand of `@`", span)
        require_axes(b, over, "the right operand of `@`", span)
        check_same_sizes(ins, span)
        dtype = same_dtype(ins, "@", span)
        if dtype not in FLOAT_DTYPES | INT_DTYPES:
            raise error(f"`@` needs numeric operands, not {dtype}", span)
        return [TensorType(dtype, contract_axes(a, b, over))]

    def numpy(self, e, node, ins):
        a, b = (v.type for v in node.inputs)
        return [e.call("np.einsum", einsum_spec(a, b, node.outputs[0].type), *ins, optimize=True)]

    def onnx(self, g, node, ins):
        a, b = (v.type for v in node.inputs)
        over = node.attrs["axes"]
        # Dense layer fast path: x[..., k] @ W[k, n] or W[n, k] is one MatMul.
        if len(over) == 1 and len(b.axes) == 2 and a.names[-1] == over[0] and not a.has(
                [n for n in b.names if n != over[0]][0]):
            w = ins[1] if b.names[0] == over[0] else g.node("Transpose", [ins[1]], perm=[1, 0])
            return [g.node("MatMul", [ins[0], w])]
        return [g.node("Einsum", ins, equation=einsum_spec(a, b, node.outputs[0].type))]
