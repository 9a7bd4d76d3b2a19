"""Half precision: what `f16` and `bf16` mean, for both backends, and `--dtype`.

The rule both backends follow: a node whose inputs or outputs are `f16` or `bf16` computes in
float32 and rounds its results to their dtype (round to nearest even). A matmul accumulates in
float32; a fused op (attention, a residual add and norm) rounds only its final results. So the
NumPy reference and onnxruntime (whose CPU provider has no bf16 arithmetic kernels and few
f16 ones) agree by construction, up to float32 rounding inside the ops.

`widened(node)` is the float32 twin of such a node, which a backend lowers between its own
conversions: NumPy widens to float32 and rounds back (bf16 values live in float32 arrays,
rounded), ONNX puts `Cast`s around the op.

`--dtype f16|bf16` (`with_float_dtype`) reads every `f32` the program names (input, output
and parameter types, `cast(x, f32)`, `zeros(f32, ...)`) as the new dtype, as if the source
said so. A program that type-checks in f32 type-checks the same way in the new dtype.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .axes import TensorType
from .ir import Graph, Node, Value

HALF_DTYPES = ("f16", "bf16")
COMPUTE_DTYPE = "f32"
DTYPE_CHOICES = ("f32", "f16", "bf16")  # what `--dtype` accepts

# Ops that only move or pick values compute nothing to round, so they run in the tensor's own
# dtype. Each lowers to ONNX ops that onnxruntime's CPU provider has f16 and bf16 kernels for
# (Reshape, Slice, Gather, Transpose, Unsqueeze, Concat: benchmarks/half_precision.py lists
# them); `concat` and `pad` are not here, since they may broadcast (Expand) or fill (a float32
# constant).
MOVES_DATA = frozenset({"param", "rename", "split", "merge", "slice", "select", "stack", "unstack", "gather"})


def rounds_to_inf(value: float, dtype: str) -> bool:
    """Whether a finite number becomes infinite in a half dtype (past 65504 in f16, about
    3.39e38 in bf16): the literal `1e9` in an f16 model is inf, and `1e9 * 0` NaN."""
    if dtype not in HALF_DTYPES or not isinstance(value, (int, float)):
        return False
    if abs(value) > float(np.finfo(np.float32).max):
        return not (isinstance(value, float) and math.isinf(value))  # `inf` is meant
    import ml_dtypes  # (only for half: it takes a while to import)
    with np.errstate(over="ignore"):
        return bool(np.isinf(np.float32(value).astype(np.float16 if dtype == "f16" else ml_dtypes.bfloat16)))


def computes_widened(node: Node) -> bool:
    """Whether a backend lowers `node` through `widened`: it reads or makes a half tensor and
    computes something (not `MOVES_DATA`; parameters are stored in their dtype). A node holding
    a body graph (`scan`) runs that body, whose own nodes follow the rule."""
    if node.op in MOVES_DATA or any(isinstance(a, Graph) for a in node.attrs.values()):
        return False
    return any(v.type.dtype in HALF_DTYPES for v in (*node.inputs, *node.outputs))


def widened(node: Node) -> Node:
    """The same node with every half dtype read as f32: its values (same ids and producers)
    and its attributes (`dtype`, types)."""
    ins = [Value(v.id, _wide_type(v.type), v.producer, v.hint) for v in node.inputs]
    outs = [Value(v.id, _wide_type(v.type), node, v.hint) for v in node.outputs]
    attrs = {k: _wide_attr(a) for k, a in node.attrs.items()}
    return Node(node.op, ins, attrs, outs, node.span, node.scope)


def _wide_type(t: TensorType) -> TensorType:
    return t.with_dtype(COMPUTE_DTYPE) if t.dtype in HALF_DTYPES else t


def _wide_attr(a: Any) -> Any:
    if isinstance(a, str) and a in HALF_DTYPES:
        return COMPUTE_DTYPE
    if isinstance(a, TensorType):
        return _wide_type(a)
    return a


def with_float_dtype(program: Any, dtype: str) -> Any:
    """The program with every `f32` it names read as `dtype` (a copy; the parsed AST is shared
    and immutable)."""
    if dtype == "f32":
        return program
    return _retype(program, dtype)


def _retype(node: Any, dtype: str) -> Any:
    from archlang.grammar import ast
    if isinstance(node, (list, tuple)):
        items = [_retype(x, dtype) for x in node]
        return type(node)(items) if any(a is not b for a, b in zip(items, node)) else node
    if isinstance(node, dict):
        return {k: _retype(v, dtype) for k, v in node.items()}
    if not dataclasses.is_dataclass(node) or isinstance(node, (type, ast.Span)):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        if not f.init:
            continue
        old = getattr(node, f.name)
        new = _retype(old, dtype)
        if f.name == "dtype" and (old == "f32" or (old is None and isinstance(node, ast.ParamStmt))):
            new = dtype
        if new is not old:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node
