"""Fused attention: `softmax((q @ k over depth) * scale + bias [+ causal] over key) @ v over key`.

Not written in .arch: the `fuse-attention` pass makes it from the ops above, wherever they
appear and whatever the axes are called. The axes fall into roles by where they occur:

- batch (`G`): in q and k (and v), not contracted: batch, heads, kv_heads;
- query (`M`): only in q: seq, and for grouped-query attention the `group` of query heads
  that share one key/value head;
- `depth` (`D`): contracted between q and k; `key` (`L`): k's and v's position axis;
- value (`N`): only in v: the head dims of the result.

The result's axes are q's kept axes in q's order, then v's own, exactly as the unfused
contractions give them. NumPy lowers to one kernel (two matmuls); ONNX to the opset-23
`Attention` op where the layout lets q, k and v be read as [batch, seq, heads * head]
without a copy, else to MatMul/Softmax/MatMul (always, for --opset < 23).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


from ..axes import FLOAT_DTYPES, Axis, Size, TensorType
from ..diagnostics import error
from .contract import contract_axes
from .registry import OpDef, macs_over, register, require_axes, same_dtype


@dataclass(frozen=True)
class Roles:
    batch: tuple[str, ...]   # in q's order
    query: tuple[str, ...]   # in q's order
    depth: tuple[str, ...]   # in q's order
    key: str
    value: tuple[str, ...]   # in v's order


def roles(q: TensorType, k: TensorType, v: TensorType, depth: tuple[str, ...], key: str) -> Roles:
    batch = tuple(a for a in q.names if k.has(a) and a not in depth)
    query = tuple(a for a in q.names if not k.has(a))
    return Roles(batch, query, tuple(a for a in q.names if a in depth), key,
                 tuple(a for a in v.names if a not in batch and a != key))


def why_not(q: TensorType, k: TensorType, v: TensorType, depth: tuple[str, ...], key: str) -> Optional[str]:
    """Why these operands do not fit the attention op's roles (None when they do)."""
    if q.has(key):
        return f"the queries already have the key axis `{key}`"
    r = roles(q, k, v, depth, key)
    extra = [a for a in k.names if a not in r.batch + r.depth + (key,)]
    if extra:
        return f"the keys carry axes the queries lack besides `{key}`: {', '.join(extra)}"
    missing = [a for a in r.batch if not v.has(a)]
    if missing:
        return f"the values lack the batch axes {', '.join(missing)}"
    shared = [a for a in r.value if a in r.batch + r.query]
    if shared:
        return f"the values carry query axes {', '.join(shared)}"
    if not r.query:
        return "the queries have no axis of their own (no query positions)"
    return None


def scores_type(q: TensorType, k: TensorType, depth: tuple[str, ...]) -> TensorType:
    return TensorType(q.dtype, contract_axes(q, k, depth))


@register
class Attention(OpDef):
    name, surface = "attention", False
    summary = ("fused attention made by the `fuse-attention` pass: scaled scores over `depth`, additive bias, "
               "causal mask, softmax over `key`, weighted sum of values")

    def macs(self, node):
        q, k, v = (x.type for x in node.inputs[:3])
        return macs_over(q, k) + macs_over(scores_type(q, k, tuple(node.attrs["depth"])), v)

    def infer(self, ins, attrs, span):
        q, k, v = ins[:3]
        depth, key = tuple(attrs["depth"]), attrs["key"]
        require_axes(q, depth, "the queries", span)
        require_axes(k, depth + (key,), "the keys", span)
        require_axes(v, (key,), "the values", span)
        dtype = same_dtype(list(ins), "attention", span)
        if dtype not in FLOAT_DTYPES:
            raise error(f"attention needs floating-point operands, not {dtype}", span)
        problem = why_not(q, k, v, depth, key)
        if problem:
            raise error(f"attention: {problem}", span)
        scores = scores_type(q, k, depth)
        if len(ins) == 4 and not all(scores.has(a) for a in ins[3].names):
            raise error("attention: the bias has axes the scores lack", span)
        query = attrs.get("causal")
        if query is not None and (not q.has(query) or q.axis(query).size != k.axis(key).size):
            raise error(f"attention: causal query axis `{query}` must be the queries' and as long as `{key}`", span)
        return [TensorType(dtype, contract_axes(scores, v, (key,)))]

    # ---- NumPy: align to the kernel's canonical layout, one kernel call, one transpose ----
    def numpy(self, e, node, ins):
        q, k, v = (x.type for x in node.inputs[:3])
        r = roles(q, k, v, tuple(node.attrs["depth"]), node.attrs["key"])
        qa = e.align(ins[0], q, r.batch + r.query + r.depth)
        ka = e.align(ins[1], k, r.batch + (r.key,) + r.depth)
        va = e.align(ins[2], v, r.batch + (r.key,) + r.value)
        bias = None
        if len(ins) == 4:
            bias = _aligned_bias(e, ins[3], node.inputs[3].type, r)
        causal = node.attrs.get("causal")
        out = e.call("attention", qa, ka, va, bias, scale=float(node.attrs["scale"]), batch=len(r.batch),
                     causal=None if causal is None else r.query.index(causal))
        return [e.align(out, TensorType(q.dtype, _axes(q, v, r.batch + r.query) + _axes(v, v, r.value)),
                        node.outputs[0].type.names)]

    def onnx(self, g, node, ins):
        from .attention_onnx import lower_attention
        return [lower_attention(g, node, ins)]


def _axes(t: TensorType, other: TensorType, names) -> tuple[Axis, ...]:
    return tuple((t.axis(n) if t.has(n) else other.axis(n)) for n in names)


def _aligned_bias(e, x, t: TensorType, r: Roles):
    """The bias laid out against scores (batch..., query..., key), size-1 where it lacks an axis
    (leading ones too, so the kernel can count dims)."""
    order = r.batch + r.query + (r.key,)
    x = e.align(x, t, order)
    lead = [i for i, a in enumerate(order) if a in t.names]
    missing = tuple(range(lead[0])) if lead else tuple(range(len(order)))
    return e.call("np.expand_dims", x, missing) if missing else x


def group_size(t: TensorType, names) -> Size:
    total = Size.of(1)
    for n in names:
        total = total * t.axis(n).size
    return total


def static_product(t: TensorType, names) -> Optional[int]:
    sizes = [t.axis(n).size.value for n in names]
    return None if any(s is None for s in sizes) else math.prod(sizes)

