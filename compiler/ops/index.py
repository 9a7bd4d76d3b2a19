"""Indexing and leaves made from axes: `gather` (embedding lookup), `arange` (positions along an
axis), `zeros` (a tensor of zeros, as a scan's initial state)."""
from __future__ import annotations

import numpy as np

from ..axes import INT_DTYPES, TensorType
from ..diagnostics import error
from .registry import OpDef, numpy_dtype, register, require_axes


@register
class Gather(OpDef):
    name = "gather"
    summary = "pick slices of `table` along one axis by an integer index tensor; `wte[tokens]` gathers the first axis"
    example = "h = gather(wte, tokens over vocab)"

    def build(self, b, call):
        if len(call.args) != 2 or call.over is None or len(call.over.axes) != 1 or call.over.target:
            raise error("`gather` takes a table, an index tensor and `over` the axis to index, "
                        "as in `gather(wte, tokens over vocab)`", call.span)
        return [self.build_gather(b, b.tensor(call.args[0]), b.tensor(call.args[1]), call.over.axes[0], call.span)]

    def build_gather(self, b, table, index, axis, span):
        return b.emit("gather", [table, index], {"axis": axis}, span)[0]

    def infer(self, ins, attrs, span):
        table, index = ins
        axis = attrs["axis"]
        require_axes(table, [axis], "the gathered tensor", span)
        if index.dtype not in INT_DTYPES:
            raise error(f"indices must be integers, not {index.dtype}", span, "convert with `cast(i, i64)`")
        clash = [n for n in index.names if table.has(n) and n != axis]
        if clash:
            raise error(f"the indices and the table both have axis `{clash[0]}`", span,
                        "gather looks up each index in the whole table; rename one of the axes")
        p = table.position(axis)
        return [TensorType(table.dtype, table.axes[:p] + index.axes + table.axes[p + 1:])]

    def numpy(self, e, node, ins):
        return [e.call("np.take", ins[0], ins[1], axis=node.inputs[0].type.position(node.attrs["axis"]))]

    def onnx(self, g, node, ins):
        return [g.node("Gather", ins, axis=node.inputs[0].type.position(node.attrs["axis"]))]


@register
class Arange(OpDef):
    name = "arange"
    summary = "`arange(axis)`: the positions 0 … |axis|-1 along one axis, as i64"
    example = "pos = arange(seq)"

    def build(self, b, call):
        from archlang.grammar import ast as A
        if len(call.args) != 1 or not isinstance(call.args[0], A.Var) or call.over is not None:
            raise error("`arange` takes one axis name, as in `arange(seq)`", call.span)
        return b.emit("arange", [], {"axis": b.axis(call.args[0].name, call.args[0].span)}, call.span)

    def infer(self, ins, attrs, span):
        return [TensorType("i64", (attrs["axis"],))]

    def numpy(self, e, node, ins):
        return [e.call("np.arange", e.size(node.attrs["axis"].size), dtype="int64")]

    def onnx(self, g, node, ins):
        limit = g.node("Reshape", [g.size(node.attrs["axis"].size), g.const_i64([])])
        return [g.node("Range", [g.const_i64(0), limit, g.const_i64(1)])]


@register
class Zeros(OpDef):
    name = "zeros"
    summary = ("`zeros(batch, hidden)`: a tensor of zeros with these axes (f32, or a dtype given first: "
               "`zeros(f64, batch, hidden)`); the initial state of a `scan`")
    example = "h0 = zeros(seq, embed)"

    def build(self, b, call):
        from archlang.grammar import ast as A
        args = list(call.args)
        dtype = b.float_dtype
        if args and isinstance(args[0], A.DTypeArg):
            dtype = args.pop(0).dtype
        if not args or not all(isinstance(a, A.Var) for a in args) or call.over is not None:
            raise error("`zeros` takes axis names, optionally after a dtype, as in `zeros(batch, hidden)`",
                        call.span)
        axes = []
        for a in args:
            ax = b.axis(a.name, a.span)
            if ax in axes:
                raise error(f"axis `{a.name}` appears twice", a.span)
            axes.append(ax)
        return b.emit("zeros", [], {"axes": tuple(axes), "dtype": dtype}, call.span)

    def infer(self, ins, attrs, span):
        return [TensorType(attrs["dtype"], attrs["axes"])]

    def numpy(self, e, node, ins):
        return [e.call("np.zeros", e.shape(node.attrs["axes"]), dtype=numpy_dtype(node.attrs["dtype"]).name)]

    def onnx(self, g, node, ins):
        zero = g.const(np.zeros((1,), dtype=numpy_dtype(node.attrs["dtype"])))
        return [g.node("Expand", [zero, g.shape(node.attrs["axes"])])]
