"""ONNX lowerings of the fused attention op (compiler/ops/attention.py).

Two forms, chosen by layout and opset:

- `Attention` (opset 23) on 3-D [batch, seq, heads * head] views, when q, k and v are laid
  out (batch, seq, heads..., depth...) so that the views cost no copy. Grouped-query
  attention maps onto its q_num_heads / kv_num_heads when the query heads are ordered
  (kv_heads, group), the standard's grouping. Its output view is already the result's
  layout.
- MatMul, Softmax, MatMul on the kernel layout of the NumPy backend otherwise (and below
  opset 23): q and k transposed once each, the query axes merged so one batched MatMul
  computes every score.

benchmarks/passes.py measures both on GPT-2 and BERT; see the README for the figures.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..axes import Axis, Size, TensorType
from .attention import Roles, group_size, roles, static_product


def causal_mask(g, query: Axis, key: Axis) -> str:
    """An additive f32 [query, key] mask: 0 where key <= query, -inf after."""
    def positions(axis: Axis) -> str:
        limit = g.node("Reshape", [g.size(axis.size), g.const_i64([])])
        return g.node("Range", [g.const_i64(0), limit, g.const_i64(1)])
    q = g.node("Unsqueeze", [positions(query), g.const_i64([1])])
    k = g.node("Unsqueeze", [positions(key), g.const_i64([0])])
    allowed = g.node("LessOrEqual", [k, q])
    return g.node("Where", [allowed, g.const(np.zeros((), np.float32)), g.const(np.array(-np.inf, np.float32))])


def lower_attention(g, node, ins: list[str]) -> str:
    q, k, v = (x.type for x in node.inputs[:3])
    r = roles(q, k, v, tuple(node.attrs["depth"]), node.attrs["key"])
    if g.opset >= 23 and g.attention_form == "standard":
        out = _standard(g, node, ins, r)
        if out is not None:
            return out
    return _matmul_chain(g, node, ins, r)


def _merged(name: str, t: TensorType, names) -> Axis:
    return Axis(name, group_size(t, names))


def _reshape(g, x: str, axes) -> str:
    return g.node("Reshape", [x, g.shape(axes)], allowzero=1)


def _standard(g, node, ins: list[str], r: Roles) -> Optional[str]:
    """The opset-23 Attention op on zero-copy 3-D views, or None when the layout does not allow it."""
    q, k, v = (x.type for x in node.inputs[:3])
    n_depth = len(r.depth)
    if len(q.names) < 3 or q.names[0] not in r.batch or q.names[1] not in r.query:
        return None
    b, s = q.names[0], q.names[1]
    heads = q.names[2:len(q.names) - n_depth]
    kv_heads = tuple(a for a in heads if a in r.batch)
    group = tuple(a for a in heads if a in r.query)
    causal = node.attrs.get("causal")
    if (q.names[len(q.names) - n_depth:] != r.depth or heads != kv_heads + group or causal not in (None, s)
            or k.names != (b, r.key) + kv_heads + r.depth or v.names != (b, r.key) + kv_heads + r.value):
        return None
    n_heads, n_kv = static_product(q, heads), static_product(k, kv_heads)
    if n_heads is None or n_kv is None or static_product(q, r.depth) is None or static_product(v, r.value) is None:
        return None
    inputs = [_reshape(g, ins[0], [q.axis(b), q.axis(s), _merged("qh", q, heads + r.depth)]),
              _reshape(g, ins[1], [k.axis(b), k.axis(r.key), _merged("kh", k, kv_heads + r.depth)]),
              _reshape(g, ins[2], [v.axis(b), v.axis(r.key), _merged("vh", v, kv_heads + r.value)])]
    if len(ins) == 4:
        mask = _mask_4d(g, ins[3], node.inputs[3].type, b, heads, q.axis(s), k.axis(r.key))
        if mask is None:
            return None
        inputs.append(mask)
    out = g.node("Attention", inputs, q_num_heads=n_heads, kv_num_heads=n_kv, scale=float(node.attrs["scale"]),
                 is_causal=int(causal is not None))
    return _reshape(g, out, node.outputs[0].type.axes)


def _mask_4d(g, x: str, t: TensorType, b: str, heads: tuple, query: Axis, key_axis: Axis) -> Optional[str]:
    """The bias as [batch|1, heads|1, seq, key], or None when it carries only some head axes."""
    s, key = query.name, key_axis.name
    present = [h for h in heads if t.has(h)]
    if present and len(present) != len(heads):
        return None
    order = [a for a in (b,) + heads + (s, key) if t.has(a)]
    x = g.align(x, t, order) if tuple(order) != t.names else x
    one = Axis("one", Size.of(1))
    dims = [t.axis(b) if t.has(b) else one, _merged("h", t, heads) if present else one,
            t.axis(s) if t.has(s) else one, t.axis(key) if t.has(key) else one]
    x = _reshape(g, x, dims)
    if not (t.has(s) and t.has(key)):  # onnxruntime wants the mask's last two dims whole
        x = g.node("Expand", [x, g.shape([one, one, query, key_axis])])
    return x


def _matmul_chain(g, node, ins: list[str], r: Roles) -> str:
    q, k, v = (x.type for x in node.inputs[:3])
    batch_axes = [q.axis(a) if q.has(a) else k.axis(a) for a in r.batch]
    queries, n_key = [q.axis(a) for a in r.query], k.axis(r.key)
    qa = _reshape(g, g.align(ins[0], q, r.batch + r.query + r.depth),
                  batch_axes + [_merged("m", q, r.query), _merged("d", q, r.depth)])
    ka = _reshape(g, g.align(ins[1], k, r.batch + r.depth + (r.key,)),
                  batch_axes + [_merged("d", k, r.depth), n_key])
    scale = float(node.attrs["scale"])
    if scale != 1.0:
        qa = g.node("Mul", [qa, g.scalar(scale, q.dtype)])
    scores = g.node("MatMul", [qa, ka])
    if len(queries) > 1:
        scores = _reshape(g, scores, batch_axes + queries + [n_key])
    layout = r.batch + r.query + (r.key,)
    if len(ins) == 4:
        scores = g.node("Add", [scores, g.align(ins[3], node.inputs[3].type, layout)])
    causal = node.attrs.get("causal")
    if causal is not None:
        mask_type = TensorType("f32", (q.axis(causal), n_key))
        scores = g.node("Add", [scores, g.align(causal_mask(g, q.axis(causal), n_key), mask_type, layout)])
    probs = g.node("Softmax", [scores], axis=-1)
    if len(queries) > 1:
        probs = _reshape(g, probs, batch_axes + [_merged("m", q, r.query), n_key])
    va = g.align(ins[2], v, r.batch + (r.key,) + r.value)
    if len(r.value) != 1:
        va = _reshape(g, va, batch_axes + [n_key, _merged("n", v, r.value)])
    out = g.node("MatMul", [probs, va])
    values = [v.axis(a) for a in r.value]
    if len(queries) != 1 or len(values) != 1:
        out = _reshape(g, out, batch_axes + queries + values)
    kernel = TensorType(q.dtype, tuple(batch_axes + queries + values))
    return g.align(out, kernel, node.outputs[0].type.names)
