"""Reductions and normalised exponentials over named axes."""
from __future__ import annotations

from ..axes import FLOAT_DTYPES, INT_DTYPES
from ..diagnostics import error
from .registry import OpDef, OverOneAxis, positions, register, require_axes


class _Reduce(OpDef):
    allowed_attrs = ("axes",)
    required_attrs = ("axes",)
    np_fn = ""
    onnx_op = ""

    def infer(self, ins, attrs, span):
        if len(ins) != 1:
            raise error(f"`{self.name}` takes one tensor and `over` axes", span)
        require_axes(ins[0], attrs["axes"], f"the operand of `{self.name}`", span)
        allowed = FLOAT_DTYPES if self.name == "mean" else FLOAT_DTYPES | INT_DTYPES
        if ins[0].dtype not in allowed:
            kind = "floating-point" if self.name == "mean" else "numeric"
            raise error(f"`{self.name}` needs a {kind} operand, not {ins[0].dtype}", span,
                        "convert first with `cast(x, f32)`")
        return [ins[0].without(attrs["axes"])]

    def numpy(self, e, node, ins):
        return [e.call(self.np_fn, ins[0], axis=positions(node.inputs[0].type, node.attrs["axes"]))]

    def onnx(self, g, node, ins):
        axes = list(positions(node.inputs[0].type, node.attrs["axes"]))
        if self.onnx_op != "ReduceSum" and g.opset < 18:  # axes became an input in opset 18
            return [g.node(self.onnx_op, ins, keepdims=0, axes=axes)]
        return [g.node(self.onnx_op, [ins[0], g.const_i64(axes)], keepdims=0)]


for _n, _np, _ox in [("sum", "np.sum", "ReduceSum"), ("mean", "np.mean", "ReduceMean"),
                     ("max", "np.max", "ReduceMax"), ("min", "np.min", "ReduceMin"),
                     ("prod", "np.prod", "ReduceProd")]:
    register(type(_n, (_Reduce,), dict(name=_n, np_fn=_np, onnx_op=_ox, __module__=__name__,
                                       summary=f"{_n} over the named axes",
                                       example=f"y = {_n}(x over seq)")))


class _Softmax(OverOneAxis):
    operand_dtypes, operand_kind = FLOAT_DTYPES, "floating-point"


@register
class Softmax(_Softmax):
    name, np_fn, onnx_op = "softmax", "softmax", "Softmax"
    summary = "softmax over one axis"
    example = "p = softmax(scores over key)"


@register
class LogSoftmax(_Softmax):
    name, np_fn, onnx_op = "log_softmax", "log_softmax", "LogSoftmax"
    summary = "log of softmax over one axis"
    example = "p = log_softmax(logits over vocab)"
