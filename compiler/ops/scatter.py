"""Scatter reductions: sum, mean or max of the slices that an index sends to each position of
another axis. Message passing over an edge list is a `gather` by source node and a scatter
by destination node:

    messages = gather(x, src over node)                  # [edge, feat]
    summed = scatter_sum(messages, dst over edge -> node)  # [node, feat]

The index tensor has exactly the scattered axis (`dst: i64[edge]`); every other axis of the
values is carried along. A position no index names gets 0 (PyTorch Geometric's and
torch_scatter's convention, also for max, so an isolated node reads zeros, not -inf).
"""
from __future__ import annotations

import numpy as np

from ..axes import FLOAT_DTYPES, INT_DTYPES, TensorType
from ..diagnostics import error
from .registry import OpDef, numpy_dtype, register


class _Scatter(OpDef):
    reduction = ""  # "sum", "mean" or "max"

    def build(self, b, call):
        over = call.over
        if (len(call.args) != 2 or over is None or over.target is None or len(over.axes) != 1
                or len(over.target) != 1):
            raise error(f"`{self.name}` takes values, an index tensor and `over` the axis the index runs "
                        f"along `->` the axis it points into, as in `{self.name}(messages, dst over edge -> node)`",
                        call.span)
        values, index = b.tensor(call.args[0]), b.tensor(call.args[1])
        target = b.axis(over.target[0], over.span)
        return b.emit(self.name, [values, index], {"axis": over.axes[0], "target": target}, call.span)

    def infer(self, ins, attrs, span):
        values, index = ins
        axis, target = attrs["axis"], attrs["target"]
        if not values.has(axis):
            raise error(f"the values of `{self.name}` have no axis `{axis}`; their axes are "
                        f"{', '.join(values.names) or '(none)'}", span)
        if index.names != (axis,):
            raise error(f"the index of `{self.name}` must have exactly the axis `{axis}`, but has "
                        f"[{', '.join(index.names)}]", span,
                        "one destination per slice: index with a 1-D tensor such as `dst: i64[edge]`")
        if index.dtype not in INT_DTYPES:
            raise error(f"indices must be integers, not {index.dtype}", span, "convert with `cast(i, i64)`")
        if index.axis(axis).size != values.axis(axis).size:
            raise error(f"axis `{axis}` is {index.axis(axis).size} in the index but {values.axis(axis).size} "
                        "in the values", span)
        if values.has(target.name):
            raise error(f"the values of `{self.name}` already have the axis `{target.name}` it scatters into",
                        span, f"rename one of them, as in `axis {target.name}2 ~ {target.name}`")
        allowed = FLOAT_DTYPES if self.reduction == "mean" else FLOAT_DTYPES | INT_DTYPES
        if values.dtype not in allowed:
            raise error(f"`{self.name}` needs {'floating-point' if self.reduction == 'mean' else 'numeric'} "
                        f"values, not {values.dtype}", span, "convert first with `cast(x, f32)`")
        p = values.position(axis)
        return [TensorType(values.dtype, values.axes[:p] + (target,) + values.axes[p + 1:])]

    # Both lowerings work with the scattered axis first: values [axis, rest...] -> [target, rest...].
    def _orders(self, node):
        values, out = node.inputs[0].type, node.outputs[0].type
        axis, target = node.attrs["axis"], node.attrs["target"].name
        rest = tuple(n for n in values.names if n != axis)
        return (axis,) + rest, (target,) + rest, values, out

    def numpy(self, e, node, ins):
        src, dst, values, out = self._orders(node)
        aligned = e.align(ins[0], values, src)
        result = e.call("scatter_reduce", aligned, ins[1], e.shape(tuple(out.axis(n) for n in dst)),
                        reduction=self.reduction)
        return [e.align(result, TensorType(out.dtype, tuple(out.axis(n) for n in dst)), out.names)]

    def onnx(self, g, node, ins):
        src, dst, values, out = self._orders(node)
        first = TensorType(out.dtype, tuple(out.axis(n) for n in dst))
        aligned = g.align(ins[0], values, src)
        index = g.node("Unsqueeze", [ins[1], g.const_i64([1])])
        if node.inputs[1].type.dtype != "i64":
            index = g.node("Cast", [index], to=g.dtype("i64"))
        zero = g.const(np.zeros((1,), dtype=numpy_dtype(out.dtype)))
        if self.reduction == "max":
            if g.opset < 18:
                raise error("`scatter_max` lowers to ScatterND's max reduction, new in ONNX opset 18; "
                            f"compile with --opset 18 or newer (this is {g.opset})", node.span)
            result = self._max(g, aligned, index, first, zero)
        else:
            result = g.node("ScatterND", [g.node("Expand", [zero, g.shape(first.axes)]), index, aligned],
                            reduction="add")
            if self.reduction == "mean":
                result = g.node("Div", [result, self._counts(g, index, first, out.dtype)])
        return [g.align(result, first, out.names)]

    @staticmethod
    def _counts(g, index, first: TensorType, dtype: str) -> str:
        """How many slices each target position receives (at least 1, so empty ones divide to 0),
        shaped [target, 1, ...] to broadcast over the carried axes."""
        ones = g.node("Expand", [g.const(np.ones((1,), dtype=numpy_dtype(dtype))),
                                 g.node("Shape", [index], start=0, end=1)])
        counts = g.node("ScatterND", [g.node("Expand", [g.const(np.zeros((1,), dtype=numpy_dtype(dtype))),
                                                         g.shape(first.axes[:1])]), index, ones],
                        reduction="add")
        counts = g.node("Max", [counts, g.const(np.ones((1,), dtype=numpy_dtype(dtype)))])
        if len(first.axes) > 1:
            counts = g.node("Unsqueeze", [counts, g.const_i64(list(range(1, len(first.axes))))])
        return counts

    @staticmethod
    def _max(g, aligned, index, first: TensorType, zero) -> str:
        """ScatterND's max over a start of the dtype's lowest value; positions nothing reached
        (still at the lowest value) become 0."""
        dtype = numpy_dtype(first.dtype)
        lowest = np.array([np.finfo(dtype).min if dtype.kind == "f" else np.iinfo(dtype).min], dtype=dtype)
        start = g.node("Expand", [g.const(lowest), g.shape(first.axes)])
        reached = g.node("ScatterND", [start, index, aligned], reduction="max")
        ones = g.node("Expand", [g.const(np.ones((1,), dtype=dtype)), g.node("Shape", [aligned])])
        hit = g.node("ScatterND", [g.node("Expand", [zero, g.shape(first.axes)]), index, ones], reduction="max")
        return g.node("Where", [g.node("Cast", [hit], to=g.dtype("bool")), reached, zero])


@register
class ScatterSum(_Scatter):
    name, reduction = "scatter_sum", "sum"
    summary = "`scatter_sum(v, dst over edge -> node)`: add each slice of `v` along `edge` into position `dst` of `node`"
    example = "agg = scatter_sum(messages, dst over edge -> node)"


@register
class ScatterMean(_Scatter):
    name, reduction = "scatter_mean", "mean"
    summary = "the mean of the slices each position of `node` receives (0 where none arrive)"
    example = "agg = scatter_mean(messages, dst over edge -> node)"


@register
class ScatterMax(_Scatter):
    name, reduction = "scatter_max", "max"
    summary = "the elementwise max of the slices each position of `node` receives (0 where none arrive)"
    example = "agg = scatter_max(messages, dst over edge -> node)"
