"""`rotary`: a rotary position embedding, each pair of halves turned by an angle (made by `fuse-rotary`).

    y = rotary(x, cos, sin; pair=two)
      = stack(x1 * cos - x2 * sin, x2 * cos + x1 * sin over two)   where x1, x2 = unstack(x over two)

`x` stores each head as two halves along `pair` (size 2: LLaMA's `rotate_half` convention,
not interleaved); `cos` and `sin` carry the other rotated axis (`half`) and the position
axes, all of them axes of `x`, and broadcast over the rest (batch, heads). The result has
`x`'s type, in `x`'s order (the unfused `stack` puts `pair` first).

NumPy: one kernel (numpy_runtime.rotary). ONNX: the opset-23 `RotaryEmbedding` op when `x`
is laid out (batch, seq, heads..., pair, half), so that it is a [batch, seq, heads * head]
view without a copy, and the tables are [seq, half] (read through position ids 0..seq-1)
or [batch, seq, half]; else, and below opset 23, Gather / Mul / Sub / Add / Concat.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..axes import FLOAT_DTYPES, Axis
from ..diagnostics import error
from .attention import group_size, static_product
from .registry import OpDef, check_same_sizes, register, require_axes, same_dtype

# Measured (ms per call, best of 15 interleaved rounds of 30 calls; x f32[batch, 128, 8, 2, 32]
# (heads 8, head 64), cos and sin f32[128, 32] model inputs; ORT 1.32, ORT_ENABLE_ALL,
# 2 threads, on a shared 2-core machine with another benchmark running, so only the
# differences of several times count; two runs):
#         RotaryEmbedding   Gather/Mul/Sub/Add/Concat   Split (pair kept)/.../Concat   -O0 (unfused)
#   b1      0.041 0.039          0.145 0.139                  0.283 0.336            0.147 0.153
#   b8      1.07  1.10           5.57  6.12                   6.49  6.99             5.91  8.33
# The standard op is 3.5x (b1) to 5x (b8) faster than the elementwise forms, so it is the
# default where it applies; False always emits the Gather form (as at opset < 23).
ONNX_STANDARD = True


@register
class Rotary(OpDef):
    name, surface = "rotary", False
    summary = ("a rotary position embedding: the halves x1, x2 of `x` along `pair` become "
               "x1 * cos - x2 * sin and x2 * cos + x1 * sin (made by fuse-rotary)")
    example = "y = rotary(x, cos, sin; pair=two)"

    def infer(self, ins, attrs, span):
        if len(ins) != 3:
            raise error("`rotary` takes x, the cosines and the sines", span)
        x, cos, sin = ins
        pair = attrs.get("pair")
        require_axes(x, (pair,), "the rotated tensor", span)
        if x.axis(pair).size.value != 2:
            raise error(f"`rotary` turns pairs, but the pair axis `{pair}` has size {x.axis(pair).size}", span)
        if not cos.same_axes(sin):
            raise error(f"the cosines {cos.describe()} and the sines {sin.describe()} have different axes", span)
        extra = [a for a in cos.names if a == pair or not x.has(a)]
        if extra:
            raise error(f"the cosines and sines carry {', '.join(f'`{a}`' for a in extra)}, which the "
                        f"halves of {x.describe()} lack", span)
        check_same_sizes([x, cos], span)
        dtype = same_dtype(list(ins), "rotary", span)
        if dtype not in FLOAT_DTYPES:
            raise error(f"`rotary` needs floating-point operands, not {dtype}", span)
        return [x]

    def numpy(self, e, node, ins):
        x, cos, sin = (v.type for v in node.inputs)
        pair = node.attrs["pair"]
        half = x.without([pair]).names
        return [e.call("rotary", ins[0], e.align(ins[1], cos, half), e.align(ins[2], sin, half),
                       axis=x.position(pair))]

    def onnx(self, g, node, ins):
        if ONNX_STANDARD and g.opset >= 23:
            out = _standard(g, node, ins)
            if out is not None:
                return [out]
        return [_elementwise(g, node, ins)]


def _standard(g, node, ins: list[str]) -> Optional[str]:
    """RotaryEmbedding on a [batch, seq, heads * head] view, or None when the layout, the
    tables or the dtype do not allow it."""
    x, cos, sin = (v.type for v in node.inputs)
    names = x.names
    if len(names) < 4 or names[-2] != node.attrs["pair"] or x.dtype not in ("f32", "f16"):
        return None
    b, s, heads, half = names[0], names[1], names[2:-2], names[-1]
    if not {s, half} <= set(cos.names) <= {b, s, half}:
        return None
    n_heads = static_product(x, heads) if heads else 1
    if n_heads is None:
        return None
    hidden = Axis("hidden", group_size(x, names[2:]))
    view = g.node("Reshape", [ins[0], g.shape([x.axis(b), x.axis(s), hidden])], allowzero=1)
    if cos.has(b):  # per-sequence tables: [batch, seq, half], no position ids
        tables = [g.align(h, t, (b, s, half)) for h, t in ((ins[1], cos), (ins[2], sin))]
    else:  # one [seq, half] table, row p for position p
        tables = [g.align(h, t, (s, half)) for h, t in ((ins[1], cos), (ins[2], sin))]
        tables.append(_positions(g, x.axis(b), x.axis(s)))
    y = g.node("RotaryEmbedding", [view] + tables, num_heads=n_heads, interleaved=0)
    return g.node("Reshape", [y, g.shape(x.axes)], allowzero=1)


def _positions(g, batch: Axis, seq: Axis) -> str:
    """int64 [batch, seq] position ids 0 .. seq-1."""
    n = g.node("Reshape", [g.size(seq.size), g.const_i64([])])
    row = g.node("Unsqueeze", [g.node("Range", [g.const_i64(0), n, g.const_i64(1)]), g.const_i64([0])])
    return g.node("Expand", [row, g.shape([batch, seq])])


def _elementwise(g, node, ins: list[str]) -> str:
    """As the unfused ops lower: the halves gathered along the pair axis, turned, and
    concatenated back along it (Split keeping a size-1 pair axis ran slower, figures above)."""
    x, cos, sin = (v.type for v in node.inputs)
    pair = node.attrs["pair"]
    p, half = x.position(pair), x.without([pair]).names
    x1, x2 = (g.node("Gather", [ins[0], g.const(np.asarray(i, np.int64))], axis=p) for i in (0, 1))
    c, s = g.align(ins[1], cos, half), g.align(ins[2], sin, half)
    real = g.node("Sub", [g.node("Mul", [x1, c]), g.node("Mul", [x2, s])])
    imag = g.node("Add", [g.node("Mul", [x2, c]), g.node("Mul", [x1, s])])
    axis = g.const_i64([p])
    return g.node("Concat", [g.node("Unsqueeze", [real, axis]), g.node("Unsqueeze", [imag, axis])], axis=p)
