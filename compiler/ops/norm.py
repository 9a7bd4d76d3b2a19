"""Normalisations over named axes: layer norm, RMS norm, batch norm (inference form)."""
from __future__ import annotations

from ..axes import FLOAT_DTYPES
from ..diagnostics import error
from .registry import OpDef, check_same_sizes, positions, register, require_axes, same_dtype


class _Norm(OpDef):
    """`op(x[, weight[, bias]], eps=… over axes)`: weight and bias carry only `over` axes."""
    allowed_attrs = ("axes", "eps")
    required_attrs = ("axes",)
    max_inputs = 3
    default_eps = 1e-5

    def infer(self, ins, attrs, span):
        if not 1 <= len(ins) <= self.max_inputs:
            raise error(f"`{self.name}` takes a tensor and at most {self.max_inputs - 1} affine parameter(s)", span)
        x = ins[0]
        axes = attrs["axes"]
        require_axes(x, axes, f"the operand of `{self.name}`", span)
        for t, what in zip(ins[1:], ("weight", "bias")):
            extra = [n for n in t.names if n not in axes]
            if extra:
                raise error(f"the {what} of `{self.name}` may only carry the normalised axes "
                            f"({', '.join(axes)}), but has `{extra[0]}`", span)
        check_same_sizes(ins, span)
        same_dtype(ins, self.name, span)
        if x.dtype not in FLOAT_DTYPES:
            raise error(f"`{self.name}` needs a floating-point operand, not {x.dtype}", span)
        return [x]

    def eps(self, node) -> float:
        return float(node.attrs.get("eps", self.default_eps))

    def numpy(self, e, node, ins):
        x = node.inputs[0].type
        affine = [e.align(h, v.type, x.names) for h, v in zip(ins[1:], node.inputs[1:])]
        return [e.call(self.name, ins[0], *affine, axis=positions(x, node.attrs["axes"]), eps=self.eps(node))]

    def _to_trailing(self, g, node, ins):
        """Transpose x so the normalised axes come last; weight/bias aligned to that order."""
        x = node.inputs[0].type
        axes = list(node.attrs["axes"])
        order = [n for n in x.names if n not in axes] + axes
        xt = g.align(ins[0], x, order)
        affine = [g.align(h, v.type, axes) for h, v in zip(ins[1:], node.inputs[1:])]
        return xt, affine, order

    def _back(self, g, node, y, order):
        x = node.inputs[0].type
        if list(x.names) == order:
            return y
        return g.node("Transpose", [y], perm=[order.index(n) for n in x.names])

    def _ones(self, g, node, axes):
        """A scale of ones over the normalised axes (built at run time for symbolic sizes)."""
        import numpy as np
        from .registry import numpy_dtype
        x = node.inputs[0].type
        one = g.const(np.ones((), dtype=numpy_dtype(x.dtype)))
        return g.broadcast(one, [x.axis(a) for a in axes])


@register
class LayerNorm(_Norm):
    name = "layernorm"
    summary = "normalise to zero mean and unit variance over the named axes, then scale and shift"
    example = "y = layernorm(x, gamma, beta, eps=1e-5 over embed)"

    def onnx(self, g, node, ins):
        axes = list(node.attrs["axes"])
        xt, affine, order = self._to_trailing(g, node, ins)
        scale = affine[0] if affine else self._ones(g, node, axes)
        y = g.node("LayerNormalization", [xt, scale] + affine[1:2], axis=-len(axes), epsilon=self.eps(node))
        return [self._back(g, node, y, order)]


@register
class RmsNorm(_Norm):
    name = "rmsnorm"
    summary = "divide by the root mean square over the named axes, then scale"
    example = "y = rmsnorm(x, gamma, eps=1e-6 over embed)"
    max_inputs = 2
    default_eps = 1e-6

    def onnx(self, g, node, ins):
        axes = list(node.attrs["axes"])
        xt, affine, order = self._to_trailing(g, node, ins)
        dtype = node.inputs[0].type.dtype
        if g.opset >= 23:
            scale = affine[0] if affine else self._ones(g, node, axes)
            y = g.node("RMSNormalization", [xt, scale], axis=-len(axes), epsilon=self.eps(node))
            return [self._back(g, node, y, order)]
        reduced = list(range(-len(axes), 0))
        square = g.node("Mul", [xt, xt])
        if g.opset >= 18:
            ms = g.node("ReduceMean", [square, g.const_i64(reduced)], keepdims=1)
        else:  # axes became an input in opset 18
            ms = g.node("ReduceMean", [square], keepdims=1, axes=reduced)
        y = g.node("Div", [xt, g.node("Sqrt", [g.node("Add", [ms, g.scalar(self.eps(node), dtype)])])])
        if affine:
            y = g.node("Mul", [y, affine[0]])
        return [self._back(g, node, y, order)]


@register
class BatchNorm(OpDef):
    name = "batchnorm"
    summary = "batch norm in inference form: (x - mean) / sqrt(var + eps) * weight + bias over a channel axis"
    example = "y = batchnorm(x, weight, bias, running_mean, running_var, eps=1e-5 over chan)"
    allowed_attrs = ("axes", "eps")
    required_attrs = ("axes",)

    def infer(self, ins, attrs, span):
        if len(ins) != 5:
            raise error("`batchnorm` takes x, weight, bias, mean and var", span)
        if len(attrs["axes"]) != 1:
            raise error("`batchnorm` normalises per channel: `over` names one channel axis", span)
        c = attrs["axes"][0]
        require_axes(ins[0], [c], "the operand of `batchnorm`", span)
        for t, what in zip(ins[1:], ("weight", "bias", "mean", "var")):
            if t.names != (c,):
                raise error(f"the {what} of `batchnorm` must carry exactly the channel axis `{c}`, "
                            f"but is {t}", span)
        check_same_sizes(ins, span)
        same_dtype(ins, self.name, span)
        return [ins[0]]

    def _eps(self, node):
        return float(node.attrs.get("eps", 1e-5))

    def numpy(self, e, node, ins):
        x = node.inputs[0].type
        stats = [e.align(h, v.type, x.names) for h, v in zip(ins[1:], node.inputs[1:])]
        return [e.call("batchnorm", ins[0], *stats, eps=self._eps(node))]

    def onnx(self, g, node, ins):
        x = node.inputs[0].type
        c = node.attrs["axes"][0]
        if x.position(c) == 1 and len(x.axes) >= 2:
            return [g.node("BatchNormalization", ins, epsilon=self._eps(node))]
        w, b, mean, var = [g.align(h, v.type, x.names) for h, v in zip(ins[1:], node.inputs[1:])]
        dtype = x.dtype
        scale = g.node("Div", [w, g.node("Sqrt", [g.node("Add", [var, g.scalar(self._eps(node), dtype)])])])
        return [g.node("Add", [g.node("Mul", [g.node("Sub", [ins[0], mean]), scale]), b])]
