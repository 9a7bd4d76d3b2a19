"""Convolution over named spatial axes.

    conv(x, W, b, stride=2, padding=1 over (h, w) -> (oh, ow))

`over` names the spatial axes (1 to 3, in the order of the kernel axes) and the axes they
become; it comes last in the call. The weight's declared axis order is its storage
layout, as in PyTorch and ONNX: `conv` takes W = [out, in_per_group, *kernel] and
`conv_transpose` W = [in, out_per_group, *kernel]. The result keeps x's axes in place,
with the channel axis replaced by the weight's output axis and each spatial axis by its
target; every other axis (batch, time, ...) is a batch axis and passes through.

`stride`, `dilation` and `padding` take one number for every axis or a tuple with one per
axis (`stride=(2, 1)`); a padding item may be a pair, (before, after), for asymmetric
padding. `padding=same` keeps ceil(size / stride) positions as TensorFlow does, the odd
unit of padding going at the end; `padding=valid` is no padding.

An output axis already declared must have the computed size (the error names both
sizes); an undeclared one is declared by the call, in the current scope. Lowering:
compiler/ops/conv_common.py.
"""
from __future__ import annotations

from typing import Any

from archlang.grammar import ast as A

from ..axes import FLOAT_DTYPES, Axis, Size, TensorType
from ..diagnostics import error
from .conv_common import (check_targets, lower_numpy, lower_onnx, onnx_pads, parse_call, per_axis, replace_axes,
                          spatial_sizes, target_axes, whole, word)
from .registry import OpDef, macs_over, register, require_axes, same_dtype, whole_number

def _padding(b, kws, extents: list[int], stride: tuple[int, ...], ns: list[int],
             axes: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """(before, after) for each spatial axis, from `padding=`: a number for every side, a tuple
    with an item per axis (a number, or a pair (before, after)), `valid` (none), or `same`:
    ceil(size / stride) positions out, as TensorFlow defines it, the odd unit of padding at the
    end (with stride 1 the size is kept, as PyTorch's `padding="same"`)."""
    kw = kws.get("padding")
    if kw is None:
        return ((0, 0),) * len(axes)
    span = kw.value.span
    v = word(b, kw.value)
    if v == "valid":
        return ((0, 0),) * len(axes)
    if v == "same":
        out = []
        for n, e, s in zip(ns, extents, stride):
            total = max((-(-n // s) - 1) * s + e - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(v, str):
        raise error(f"`padding` must be a whole number, a tuple, `same` or `valid`, not `{v}`", span)
    if not isinstance(v, tuple):
        p = whole_number(v, "padding", 0, span)
        return ((p, p),) * len(axes)
    items = (v,) if len(axes) == 1 and len(v) == 2 and not any(isinstance(x, tuple) for x in v) else v
    if len(items) != len(axes):
        raise error(f"`padding` gives {len(items)} items, but there {'is' if len(axes) == 1 else 'are'} "
                    f"{len(axes)} spatial axes ({', '.join(axes)})", span,
                    "give one item per axis: a number for both sides, or a pair (before, after)")
    out = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2 or any(isinstance(x, tuple) for x in item):
                raise error(f"a padding item is a number or a pair (before, after), not {item}", span)
            out.append(tuple(whole_number(x, "padding", 0, span) for x in item))
        else:
            p = whole_number(item, "padding", 0, span)
            out.append((p, p))
    return tuple(out)


# ---- convolution ----------------------------------------------------------------


class _ConvBase(OpDef):
    keywords: tuple[str, ...] = ()
    transposed = False

    def build(self, b, call):
        ins, kws, over = parse_call(b, call, self, (2, 3))
        x, w = ins[0].type, ins[1].type
        nd = len(over.axes)
        if len(w.axes) != nd + 2:
            layout = "[in, out_per_group" if self.transposed else "[out, in_per_group"
            raise error(f"over {nd} spatial axis(es), the weight of `{self.name}` needs {nd + 2} axes "
                        f"{layout}, {', '.join(f'k{i + 1}' for i in range(nd))}], but it has "
                        f"[{', '.join(w.names)}]", call.args[1].span)
        kernel = [a.size.value for a in w.axes[2:]]
        if None in kernel:
            raise error(f"the kernel axes of `{self.name}` need fixed sizes: {w.describe()}", call.args[1].span)
        channel = self._channel(x, w, kws, call.span)
        stride = per_axis(b, kws, "stride", 1, 1, over.axes)
        dilation = per_axis(b, kws, "dilation", 1, 1, over.axes)
        extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        ns = [x.axis(s).size.value for s in over.axes]
        if self.transposed and "padding" in kws and word(b, kws["padding"].value) == "same":
            raise error("`conv_transpose` takes no `padding=same`", kws["padding"].span,
                        "give the padding as numbers; the output size is s (n - 1) + k - padding")
        attrs: dict[str, Any] = dict(channel=channel, spatial=over.axes, stride=stride, dilation=dilation,
                                     pads=_padding(b, kws, extents, stride, ns, over.axes))
        attrs["groups"] = self._groups(b, x, w, channel, kws, call.span)
        if self.transposed:
            opad = per_axis(b, kws, "output_padding", 0, 0, over.axes)
            for o, s, d in zip(opad, stride, dilation):
                if o >= max(s, d):
                    raise error(f"`output_padding` must be smaller than the stride or the dilation, not {o}",
                                kws["output_padding"].span)
            attrs["output_padding"] = opad
        sizes = self.out_sizes(ns, kernel, attrs)

        def detail(i):
            pad = attrs["pads"][i]
            return (f"`{over.axes[i]}` is {ns[i]}, kernel {kernel[i]}, stride {stride[i]}, padding "
                    f"{pad[0] if pad[0] == pad[1] else f'{pad[0]}+{pad[1]}'}, dilation {dilation[i]}"
                    + (f", output_padding {attrs['output_padding'][i]}" if self.transposed else ""))
        attrs["targets"] = target_axes(b, self.name, over, sizes, detail)
        return b.emit(self.name, ins, attrs, call.span)

    def _channel(self, x: TensorType, w: TensorType, kws, span) -> str:
        if "channels" in kws:
            kw = kws["channels"]
            if not isinstance(kw.value, A.Var):
                raise error("`channels` names the input's channel axis, as in `channels=c`", kw.span)
            require_axes(x, [kw.value.name], f"the input of `{self.name}`", kw.span)
            return kw.value.name
        # conv: W[1] (in per group), else W[0] (depthwise, W = [c, one, k...]); transposed: W[0].
        candidates = [w.names[0]] if self.transposed else [w.names[1], w.names[0]]
        for c in candidates:
            if x.has(c):
                return c
        raise error(f"`{self.name}` cannot tell the input's channel axis: it has neither "
                    f"{' nor '.join(f'`{c}`' for c in candidates)} of the weight [{', '.join(w.names)}]; "
                    f"its axes are [{', '.join(x.names)}]", span,
                    "name it with `channels=c` (a grouped weight holds the channels of one group)")

    def _groups(self, b, x: TensorType, w: TensorType, channel: str, kws, span) -> int:
        c = x.axis(channel).size
        if self.transposed:
            return whole(b, kws, "groups", 1, 1)
        per = w.axes[1].size
        g = c.divide(per)
        if g is None or g.value is None:
            raise error(f"the input's `{channel}` ({c}) is not a multiple of the weight's `{w.names[1]}` ({per}), "
                        "its input channels per group", span)
        if "groups" in kws and whole(b, kws, "groups", 1, 1) != g.value:
            raise error(f"groups={whole(b, kws, 'groups', 1, 1)} does not fit: `{channel}` is {c} and the "
                        f"weight's `{w.names[1]}` is {per}, which makes {g.value} group(s)", kws["groups"].span)
        return g.value

    def infer(self, ins, attrs, span):
        if len(ins) not in (2, 3):
            raise error(f"`{self.name}` takes x, a weight and an optional bias", span)
        x, w = ins[0], ins[1]
        dtype = same_dtype(ins, self.name, span)
        if dtype not in FLOAT_DTYPES:
            raise error(f"`{self.name}` needs floating-point operands, not {dtype}", span)
        channel, groups = attrs["channel"], attrs["groups"]
        require_axes(x, [channel], f"the input of `{self.name}`", span)
        ns = spatial_sizes(self.name, x, attrs, span)
        if len(w.axes) != len(ns) + 2 or any(a.size.value is None for a in w.axes[2:]):
            raise error(f"the weight of `{self.name}` must be [{'in, out' if self.transposed else 'out, in'}, "
                        f"kernel...] with fixed kernel sizes, not {w.describe()}", span)
        out = self._out_channel(x.axis(channel), w, groups, span)
        sizes = self.out_sizes(ns, [a.size.value for a in w.axes[2:]], attrs)
        mapping = check_targets(self.name, x, attrs, sizes, span)
        if len(ins) == 3 and (ins[2].names != (out.name,) or ins[2].axes[0].size != out.size):
            raise error(f"the bias of `{self.name}` must carry exactly the output channel axis `{out.name}`, "
                        f"but is {ins[2].describe()}", span)
        return [replace_axes(x, {channel: out, **mapping}, self.name, span)]

    def numpy(self, e, node, ins):
        a = node.attrs
        bias = ins[2] if len(ins) == 3 else None
        extra = dict(output_padding=a["output_padding"]) if self.transposed else {}
        return lower_numpy(e, node, [ins[0], ins[1], bias], a["channel"], self.kernel_fn, stride=a["stride"],
                            pads=a["pads"], **extra, dilation=a["dilation"], groups=a["groups"])

    def onnx(self, g, node, ins):
        a = node.attrs
        w = node.inputs[1].type
        extra = dict(output_padding=list(a["output_padding"])) if self.transposed else {}
        return lower_onnx(g, node, ins, a["channel"], self.onnx_op, ins[1:], strides=list(a["stride"]),
                           pads=onnx_pads(a["pads"]), dilations=list(a["dilation"]), group=a["groups"],
                           kernel_shape=[s.size.value for s in w.axes[2:]], **extra)


@register
class Conv(_ConvBase):
    name = "conv"
    summary = ("N-d convolution over named spatial axes (PyTorch/ONNX Conv); W = [out, in_per_group, *kernel], "
               "keywords stride, padding (a number, per axis `(1, 2)`, per side `((0, 1), (1, 1))`, `same` as "
               "TensorFlow's, `valid`), dilation (stride and dilation per axis too), groups (inferred), channels")
    example = "y = conv(x, weight, bias, stride=2, padding=1 over (h, w) -> (oh, ow))"
    keywords = ("stride", "padding", "dilation", "groups", "channels")
    kernel_fn, onnx_op = "conv_nd", "Conv"

    def macs(self, node):
        # one multiply-accumulate per output element, per input channel of its group, per tap
        return macs_over(node.outputs[0].type, node.inputs[1].type)

    def _out_channel(self, c: Axis, w: TensorType, groups: int, span) -> Axis:
        if c.size != w.axes[1].size * Size.of(groups):
            raise error(f"the input's `{c.name}` is {c.size}, but the weight takes {groups} group(s) of "
                        f"`{w.names[1]}` = {w.axes[1].size} channels", span)
        if w.axes[0].size.value is None or w.axes[0].size.value % groups:
            raise error(f"the weight's output axis `{w.names[0]}` ({w.axes[0].size}) does not split into "
                        f"{groups} groups", span)
        return w.axes[0]

    @staticmethod
    def out_sizes(ns, kernel, attrs):
        return [(n + p[0] + p[1] - d * (k - 1) - 1) // s + 1
                for n, k, s, p, d in zip(ns, kernel, attrs["stride"], attrs["pads"], attrs["dilation"])]


@register
class ConvTranspose(_ConvBase):
    name = "conv_transpose"
    summary = ("N-d transposed convolution (PyTorch ConvTranspose, ONNX ConvTranspose); "
               "W = [in, out_per_group, *kernel], keywords stride, padding, output_padding, dilation, groups")
    example = "y = conv_transpose(x, weight, bias, stride=2, padding=1 over (h, w) -> (h2, w2))"
    keywords = ("stride", "padding", "output_padding", "dilation", "groups", "channels")
    kernel_fn, onnx_op = "conv_transpose_nd", "ConvTranspose"
    transposed = True

    def macs(self, node):
        # each input element meets every tap of its group's output channels
        return macs_over(node.inputs[0].type, node.inputs[1].type)

    def _out_channel(self, c: Axis, w: TensorType, groups: int, span) -> Axis:
        if c.size != w.axes[0].size:
            raise error(f"the input's `{c.name}` is {c.size}, but the weight's input axis `{w.names[0]}` is "
                        f"{w.axes[0].size}", span)
        if c.size.value is None or c.size.value % groups:
            raise error(f"the input's `{c.name}` ({c.size}) does not split into {groups} groups", span)
        if groups == 1:
            return w.axes[1]
        if w.axes[1].size * Size.of(groups) != c.size:
            raise error(f"a grouped `conv_transpose` keeps the channel axis `{c.name}`, so groups × "
                        f"`{w.names[1]}` must be {c.size}", span)
        return c

    @staticmethod
    def out_sizes(ns, kernel, attrs):
        return [s * (n - 1) + d * (k - 1) + 1 + o - p[0] - p[1]
                for n, k, s, p, d, o in zip(ns, kernel, attrs["stride"], attrs["pads"], attrs["dilation"],
                                            attrs["output_padding"])]
