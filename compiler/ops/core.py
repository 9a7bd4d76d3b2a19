"""Leaves and wiring: parameters, constants, run-time axis sizes, renames and transposes."""
from __future__ import annotations

import numpy as np

from ..axes import TensorType
from ..diagnostics import error
from .registry import OpDef, numpy_dtype, register, require_axes


@register
class Param(OpDef):
    name, surface = "param", False
    summary = "a learned tensor, bound by its hierarchical name"

    def infer(self, ins, attrs, span):
        return [attrs["type"]]

    def numpy(self, e, node, ins):
        return [e.param(node.attrs["name"])]

    def onnx(self, g, node, ins):
        return [g.param(node.attrs["name"])]


@register
class Const(OpDef):
    name, surface = "const", False
    summary = "a scalar constant"

    def infer(self, ins, attrs, span):
        return [TensorType(attrs["dtype"], ())]

    def _array(self, node):
        return np.array(node.attrs["value"], dtype=numpy_dtype(node.attrs["dtype"]))

    def numpy(self, e, node, ins):
        return [e.const(self._array(node))]

    def onnx(self, g, node, ins):
        return [g.const(self._array(node))]


@register
class AxisSizeOp(OpDef):
    name, surface = "axis_size", False
    summary = "`|axis|` of a symbolic axis, known at run time"

    def infer(self, ins, attrs, span):
        return [TensorType(attrs["dtype"], ())]

    def numpy(self, e, node, ins):
        return [e.call("scalar", e.size(node.attrs["size"]), dtype=numpy_dtype(node.attrs["dtype"]).name)]

    def onnx(self, g, node, ins):
        size = g.node("Reshape", [g.size(node.attrs["size"]), g.const_i64([])])
        return [g.node("Cast", [size], to=g.dtype(node.attrs["dtype"]))]


@register
class Rename(OpDef):
    name = "rename"
    summary = "rename wires: `rename(x, seq -> key)`; no data moves"
    example = "k2 = rename(k, seq -> key)"

    def build(self, b, call):
        from archlang.grammar import ast as A
        maps = [a for a in call.args[1:] if isinstance(a, A.AxisMap)]
        if not call.args or len(maps) != len(call.args) - 1 or not maps:
            raise error("`rename` takes a tensor and `old -> new` pairs", call.span)
        x = b.tensor(call.args[0])
        mapping = []
        for m in maps:
            if len(m.source) != 1 or len(m.target) != 1:
                raise error("`rename` maps one axis to one axis; use `split` or `merge` to reshape", m.span)
            old, new = m.source[0], m.target[0]
            require_axes(x.type, [old], "the renamed tensor", m.span)
            target = b.axis(new, m.span)
            if target.size != x.type.axis(old).size:
                raise error(f"`{old}` is {x.type.axis(old).size} but `{new}` is {target.size}", m.span,
                            f"a renamed wire keeps its size; declare `axis {new} ~ {old}`")
            mapping.append((old, new))
        return b.emit("rename", [x], {"mapping": tuple(mapping)}, call.span)

    def infer(self, ins, attrs, span):
        m = dict(attrs["mapping"])
        out = []
        for a in ins[0].axes:
            out.append(type(a)(m.get(a.name, a.name), a.size))
        names = [a.name for a in out]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise error(f"after renaming, two axes are named `{dup}`", span)
        return [ins[0].with_axes(out)]

    def numpy(self, e, node, ins):
        return [ins[0]]

    def onnx(self, g, node, ins):
        return [ins[0]]


@register
class Transpose(OpDef):
    name, surface = "transpose", False
    summary = "reorder axes (a layout change; names are unchanged)"

    def infer(self, ins, attrs, span):
        return [ins[0].with_axes(ins[0].axis(n) for n in attrs["order"])]

    def _perm(self, node):
        return [node.inputs[0].type.position(n) for n in node.attrs["order"]]

    def numpy(self, e, node, ins):
        return [e.call("np.transpose", ins[0], self._perm(node))]

    def onnx(self, g, node, ins):
        return [g.node("Transpose", ins, perm=self._perm(node))]


@register
class Array(OpDef):
    name, surface = "array", False
    summary = "a constant tensor computed at compile time (constant folding's result)"

    def infer(self, ins, attrs, span):
        return [attrs["type"]]

    def numpy(self, e, node, ins):
        return [e.const(node.attrs["value"])]

    def onnx(self, g, node, ins):
        return [g.const(node.attrs["value"])]
