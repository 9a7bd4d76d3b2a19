"""Pooling and resampling over named spatial axes (`maxpool`, `avgpool`, `upsample`); the
surface call and the lowerings are shared with the convolutions (compiler/ops/conv_common.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..diagnostics import error
from .conv_common import (check_targets, lower_numpy, lower_onnx, onnx_pads, parse_call, replace_axes,
                          spatial_sizes, target_axes, whole, word)
from ..axes import FLOAT_DTYPES
from .registry import OpDef, register

# ---- pooling ----------------------------------------------------------------------


class _Pool(OpDef):
    keywords: tuple[str, ...] = ("kernel", "stride", "padding")

    def build(self, b, call):
        ins, kws, over = parse_call(b, call, self, (1, 1))
        nd = len(over.axes)
        if "kernel" not in kws:
            raise error(f"`{self.name}` needs `kernel=`", call.span, f"as in `{self.example.split('= ', 1)[1]}`")
        k = whole(b, kws, "kernel", 1, 1)
        s = whole(b, kws, "stride", k, 1)  # PyTorch: the stride defaults to the kernel size
        p = whole(b, kws, "padding", 0, 0)
        if p > k // 2:
            raise error(f"`padding` may be at most half the kernel ({k // 2}), not {p}", kws["padding"].span,
                        "a wider pad would make windows of padding only")
        attrs: dict[str, Any] = dict(spatial=over.axes, kernel=(k,) * nd, stride=(s,) * nd, pads=((p, p),) * nd)
        if "count_include_pad" in self.keywords:
            attrs["count_include_pad"] = whole(b, kws, "count_include_pad", 1, 0) != 0
        ns = [ins[0].type.axis(a).size.value for a in over.axes]

        def detail(i):
            return f"`{over.axes[i]}` is {ns[i]}, kernel {k}, stride {s}, padding {p}"
        attrs["targets"] = target_axes(b, self.name, over, self.out_sizes(ns, attrs), detail)
        return b.emit(self.name, ins, attrs, call.span)

    @staticmethod
    def out_sizes(ns, attrs):
        return [(n + p[0] + p[1] - k) // s + 1
                for n, k, s, p in zip(ns, attrs["kernel"], attrs["stride"], attrs["pads"])]

    def infer(self, ins, attrs, span):
        if len(ins) != 1:
            raise error(f"`{self.name}` takes one tensor", span)
        x = ins[0]
        if self.name == "avgpool" and x.dtype not in FLOAT_DTYPES:
            raise error(f"`avgpool` needs a floating-point operand, not {x.dtype}", span)
        sizes = self.out_sizes(spatial_sizes(self.name, x, attrs, span), attrs)
        mapping = check_targets(self.name, x, attrs, sizes, span)
        return [replace_axes(x, mapping, self.name, span)]

    def _kw(self, node):
        a = node.attrs
        return dict(kernel=a["kernel"], stride=a["stride"], pads=a["pads"])


@register
class MaxPool(_Pool):
    name = "maxpool"
    summary = "max over sliding windows of the spatial axes (PyTorch MaxPool, ONNX MaxPool); stride defaults to kernel"
    example = "y = maxpool(x, kernel=3, stride=2, padding=1 over (h, w) -> (oh, ow))"

    def numpy(self, e, node, ins):
        return lower_numpy(e, node, ins, None, "max_pool_nd", **self._kw(node))

    def onnx(self, g, node, ins):
        a = node.attrs
        return lower_onnx(g, node, ins, None, "MaxPool", [], kernel_shape=list(a["kernel"]),
                           strides=list(a["stride"]), pads=onnx_pads(a["pads"]))


@register
class AvgPool(_Pool):
    name = "avgpool"
    summary = ("mean over sliding windows of the spatial axes; count_include_pad=1 (PyTorch's default) divides "
               "by the whole window, 0 by the input elements in it")
    example = "y = avgpool(x, kernel=2 over (h, w) -> (oh, ow))"
    keywords = ("kernel", "stride", "padding", "count_include_pad")

    def numpy(self, e, node, ins):
        return lower_numpy(e, node, ins, None, "avg_pool_nd", **self._kw(node),
                            count_include_pad=node.attrs["count_include_pad"])

    def onnx(self, g, node, ins):
        a = node.attrs
        return lower_onnx(g, node, ins, None, "AveragePool", [], kernel_shape=list(a["kernel"]),
                           strides=list(a["stride"]), pads=onnx_pads(a["pads"]),
                           count_include_pad=int(a["count_include_pad"]))


# ---- resampling -------------------------------------------------------------------


@register
class Upsample(OpDef):
    name = "upsample"
    summary = ("enlarge the spatial axes by a whole factor: mode `nearest` (out[i] = x[i // scale]) or `linear` "
               "(bilinear in 2-d; PyTorch align_corners=False, ONNX Resize half_pixel)")
    example = "y = upsample(x, scale=2, mode=linear over (h, w) -> (h2, w2))"
    keywords = ("scale", "mode")
    modes = {"nearest": "upsample_nearest", "linear": "upsample_linear"}

    def build(self, b, call):
        ins, kws, over = parse_call(b, call, self, (1, 1))
        if "scale" not in kws:
            raise error("`upsample` needs `scale=`, a whole number", call.span,
                        f"as in `{self.example.split('= ', 1)[1]}`")
        scale = whole(b, kws, "scale", 1, 1)
        mode = word(b, kws["mode"].value) if "mode" in kws else "nearest"
        if mode not in self.modes:
            hint = "write `mode=linear`; it interpolates along every spatial axis" if mode in (
                "bilinear", "trilinear") else f"the modes are {', '.join(self.modes)}"
            raise error(f"`upsample` has no mode `{mode}`", kws["mode"].span, hint)
        attrs: dict[str, Any] = dict(spatial=over.axes, scale=(scale,) * len(over.axes), mode=mode)
        ns = [ins[0].type.axis(a).size.value for a in over.axes]
        attrs["targets"] = target_axes(b, self.name, over, [n * scale for n in ns],
                                    lambda i: f"`{over.axes[i]}` is {ns[i]}, scale {scale}")
        return b.emit(self.name, ins, attrs, call.span)

    def infer(self, ins, attrs, span):
        if len(ins) != 1:
            raise error("`upsample` takes one tensor", span)
        if attrs["mode"] == "linear" and ins[0].dtype not in FLOAT_DTYPES:
            raise error(f'`upsample` with mode "linear" needs a floating-point operand, not {ins[0].dtype}', span)
        ns = spatial_sizes(self.name, ins[0], attrs, span)
        mapping = check_targets(self.name, ins[0], attrs, [n * s for n, s in zip(ns, attrs["scale"])], span)
        return [replace_axes(ins[0], mapping, self.name, span)]

    def numpy(self, e, node, ins):
        return lower_numpy(e, node, ins, None, self.modes[node.attrs["mode"]], scale=node.attrs["scale"])

    def onnx(self, g, node, ins):
        a = node.attrs
        scales = g.const(np.asarray([1.0, 1.0] + [float(s) for s in a["scale"]], dtype=np.float32))
        if a["mode"] == "nearest":
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        return lower_onnx(g, node, ins, None, "Resize", ["", scales], **attrs)
