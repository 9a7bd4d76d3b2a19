"""Convolution, pooling and resampling over named spatial axes.

    conv(x, W, b, stride=2, padding=1 over (h, w) -> (oh, ow))

`over` names the spatial axes (1 to 3, in the order of the kernel axes) and the axes they
become; it comes last in the call. The weight's declared axis order is its storage
layout, as in PyTorch and ONNX: `conv` takes W = [out, in_per_group, *kernel] and
`conv_transpose` W = [in, out_per_group, *kernel]. The result keeps x's axes in place,
with the channel axis replaced by the weight's output axis and each spatial axis by its
target; every other axis (batch, time, ...) is a batch axis and passes through.

An output axis already declared must have the computed size (the error names both
sizes); an undeclared one is declared by the call, in the current scope.

Lowering: NumPy kernels (backends/numpy_runtime_conv.py) take the channel and spatial
axes last; ONNX takes NCHW, so x is transposed (when its layout differs) and its batch
axes are merged into one with a Reshape (when there are none or several), then split
and transposed back. Any number of batch axes is allowed.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from archlang.grammar import ast as A

from ..axes import FLOAT_DTYPES, Axis, Size, TensorType
from ..diagnostics import CompileError, Diagnostic, did_you_mean, error
from .registry import OpDef, register, require_axes, same_dtype, whole_number

# ---- reading the surface call --------------------------------------------------


def _parse(b, call, op: "OpDef", n_tensors: tuple[int, int]):
    """Tensor arguments, keywords by name (checked against the op's), and the `over` clause."""
    kws: dict[str, A.Keyword] = {}
    for a in call.args:
        if isinstance(a, A.Keyword):
            if a.name not in op.keywords:
                raise error(f"`{op.name}` takes no keyword `{a.name}`", a.span,
                            did_you_mean(a.name, op.keywords) or f"its keywords are {', '.join(op.keywords)}")
            if a.name in kws:
                raise error(f"keyword `{a.name}` is given twice", a.span)
            kws[a.name] = a
    tensors = [a for a in call.args if not isinstance(a, A.Keyword)]
    lo, hi = n_tensors
    if not lo <= len(tensors) <= hi:
        raise error(f"`{op.name}` takes {lo if lo == hi else f'{lo} or {hi}'} tensor argument(s), "
                    f"not {len(tensors)}", call.span, f"as in `{op.example.split('= ', 1)[1]}`")
    over = call.over
    if over is None or over.target is None:
        raise error(f"`{op.name}` needs `over` its spatial axes and the axes they become", call.span,
                    f"write it last in the call, as in `{op.example.split('= ', 1)[1]}`")
    if len(over.axes) != len(over.target):
        raise error(f"`over` maps {len(over.axes)} axis(es) to {len(over.target)}; "
                    f"each spatial axis needs one target", over.span)
    if not 1 <= len(over.axes) <= 3:
        raise error(f"`{op.name}` works over 1, 2 or 3 spatial axes, not {len(over.axes)}", over.span)
    for names in (over.axes, over.target):
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise error(f"axis `{dup}` appears twice in `over`", over.span)
    values = [b.tensor(t) for t in tensors]
    require_axes(values[0].type, over.axes, f"the input of `{op.name}`", over.span)
    for s in over.axes:
        size = values[0].type.axis(s).size
        if not size.is_static:
            what = "symbolic (set at run time)" if size == Size.of(s) else f"{size}"
            raise error(f"`{op.name}` needs a fixed size for the spatial axis `{s}`, but `{s}` is {what}",
                        over.span, f"declare it with a size, as in `axis {s} = 32`")
    return values, kws, over


def _word(b, value) -> Any:
    """A keyword value: a string (`mode="linear"`), or a bare word that names no value or
    constant (`mode=linear`, `padding=same`), else a compile-time number."""
    if isinstance(value, A.Var) and value.name not in b.env.values and value.name not in b.consts \
            and value.name not in b.env.axes:
        return value.name
    return b.static(value)


def _whole(b, kws, name: str, default: int, minimum: int) -> int:
    kw = kws.get(name)
    if kw is None:
        return default
    return whole_number(b.static(kw.value), name, minimum, kw.value.span)


def _padding(b, kws, extents: list[int], stride: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """`padding=p` on both sides of each axis, or `same` (stride 1: output size = input size,
    the odd unit of an even kernel going at the end, as PyTorch does)."""
    kw = kws.get("padding")
    v = _word(b, kw.value) if kw is not None else 0
    if v == "same":
        if any(s != 1 for s in stride):
            raise error("`padding=same` needs stride 1", kw.span)
        return tuple(((e - 1) // 2, (e - 1) - (e - 1) // 2) for e in extents)
    if isinstance(v, str):
        raise error(f"`padding` must be a whole number or `same`, not `{v}`", kw.value.span)
    p = _whole(b, kws, "padding", 0, 0)
    return tuple((p, p) for _ in extents)


def _targets(b, op: str, over, sizes: list[int], detail: Callable[[int], str]) -> tuple[Axis, ...]:
    """The output axes: declared ones are checked, new ones declared in the current scope."""
    out = []
    for i, (src, name, n) in enumerate(zip(over.axes, over.target, sizes)):
        if n < 1:
            raise error(f"`{op}` over `{src}` leaves nothing: {detail(i)} gives size {n}", over.span)
        if name in b.env.values:
            raise error(f"`{name}` is a value here; the output axis needs another name", over.span)
        if name in b.env.axes:
            ax = b.env.axes[name]
            if ax.size != Size.of(n):
                diag = Diagnostic(f"axis `{name}` is {ax.size}, but `{op}` over `{src}` gives {n} "
                                  f"({detail(i)})", over.span)
                if b.env.axis_spans.get(name) is not None:
                    diag.note(f"`{name}` declared here", b.env.axis_spans[name])
                raise CompileError(diag)
        else:
            ax = Axis(name, Size.of(n))
            b.env.axes[name] = ax
            b.env.axis_spans[name] = over.span
        out.append(ax)
    return tuple(out)


def _check_targets(op: str, x: TensorType, attrs, sizes: list[int], span) -> dict[str, Axis]:
    mapping = {}
    for s, t, n in zip(attrs["spatial"], attrs["targets"], sizes):
        if t.size != Size.of(n):
            raise error(f"axis `{t.name}` is {t.size}, but `{op}` over `{s}` gives {n}", span)
        mapping[s] = t
    return mapping


def _replace(x: TensorType, mapping: dict[str, Axis], op: str, span) -> TensorType:
    axes = tuple(mapping.get(a.name, a) for a in x.axes)
    names = [a.name for a in axes]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise error(f"the result of `{op}` would have two axes named `{dup}`", span,
                    "name the output axes apart from the input's other axes")
    return x.with_axes(axes)


def _spatial_sizes(op: str, x: TensorType, attrs, span) -> list[int]:
    require_axes(x, attrs["spatial"], f"the input of `{op}`", span)
    sizes = [x.axis(s).size.value for s in attrs["spatial"]]
    if None in sizes:
        raise error(f"`{op}` needs fixed sizes for its spatial axes", span)
    return sizes


# ---- layouts for the kernels ---------------------------------------------------


def _layout(node, channel: Optional[str]) -> tuple[list[str], list[str]]:
    """Input order [*batch, (channel), *spatial] and the matching output order."""
    x, y = node.inputs[0].type, node.outputs[0].type
    inner = ([channel] if channel else []) + list(node.attrs["spatial"])
    order = [n for n in x.names if n not in inner] + inner
    return order, [y.names[x.position(n)] for n in order]


def _reorder(em, h, names: list[str], y: TensorType):
    """A handle laid out as `names` (y's axes) transposed to y's order."""
    return em.align(h, y.with_axes(y.axis(n) for n in names), y.names)


def _lower_numpy(e, node, ins, channel, fn: str, **kw):
    order, out_order = _layout(node, channel)
    x = e.align(ins[0], node.inputs[0].type, order)
    return [_reorder(e, e.call(fn, x, *ins[1:], **kw), out_order, node.outputs[0].type)]


def _lower_onnx(g, node, ins, channel, op_type: str, extra_inputs: list[str], **attrs):
    """Transpose to [*batch, (C), *spatial], make it [N, C, *spatial], run, and undo."""
    order, out_order = _layout(node, channel)
    x_t, y_t = node.inputs[0].type, node.outputs[0].type
    x = g.align(ins[0], x_t, order)
    n_inner = len(node.attrs["spatial"]) + (1 if channel else 0)
    lead = len(order) - n_inner
    merge = lead != (1 if channel else 2)
    if merge:
        inner = [x_t.axis(n) for n in order[lead:]]
        prefix = [-1] if channel else [-1, 1]
        if all(a.size.is_static for a in inner):
            shape = g.const_i64(prefix + [a.size.value for a in inner])
        else:
            shape = g.node("Concat", [g.const_i64(prefix), g.shape(inner)], axis=0)
        x = g.node("Reshape", [x, shape])
    y = g.node(op_type, [x] + extra_inputs, **attrs)
    if merge:
        y = g.node("Reshape", [y, g.shape([y_t.axis(n) for n in out_order])], allowzero=1)
    return [_reorder(g, y, out_order, y_t)]


def _onnx_pads(pads) -> list[int]:
    return [p[0] for p in pads] + [p[1] for p in pads]


# ---- convolution ----------------------------------------------------------------


class _ConvBase(OpDef):
    keywords: tuple[str, ...] = ()
    transposed = False

    def build(self, b, call):
        ins, kws, over = _parse(b, call, self, (2, 3))
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
        stride = (_whole(b, kws, "stride", 1, 1),) * nd
        dilation = (_whole(b, kws, "dilation", 1, 1),) * nd
        extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
        attrs: dict[str, Any] = dict(channel=channel, spatial=over.axes, stride=stride, dilation=dilation,
                                     pads=_padding(b, kws, extents, stride) if not self.transposed
                                     else tuple((p, p) for p in [_whole(b, kws, "padding", 0, 0)] * nd))
        attrs["groups"] = self._groups(b, x, w, channel, kws, call.span)
        if self.transposed:
            op = _whole(b, kws, "output_padding", 0, 0)
            if op >= max(stride[0], dilation[0]):
                raise error(f"`output_padding` must be smaller than the stride or the dilation, not {op}",
                            kws["output_padding"].span)
            attrs["output_padding"] = (op,) * nd
        ns = [x.axis(s).size.value for s in over.axes]
        sizes = self.out_sizes(ns, kernel, attrs)

        def detail(i):
            pad = attrs["pads"][i]
            return (f"`{over.axes[i]}` is {ns[i]}, kernel {kernel[i]}, stride {stride[i]}, padding "
                    f"{pad[0] if pad[0] == pad[1] else f'{pad[0]}+{pad[1]}'}, dilation {dilation[i]}"
                    + (f", output_padding {attrs['output_padding'][i]}" if self.transposed else ""))
        attrs["targets"] = _targets(b, self.name, over, sizes, detail)
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
            return _whole(b, kws, "groups", 1, 1)
        per = w.axes[1].size
        g = c.divide(per)
        if g is None or g.value is None:
            raise error(f"the input's `{channel}` ({c}) is not a multiple of the weight's `{w.names[1]}` ({per}), "
                        "its input channels per group", span)
        if "groups" in kws and _whole(b, kws, "groups", 1, 1) != g.value:
            raise error(f"groups={_whole(b, kws, 'groups', 1, 1)} does not fit: `{channel}` is {c} and the "
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
        ns = _spatial_sizes(self.name, x, attrs, span)
        if len(w.axes) != len(ns) + 2 or any(a.size.value is None for a in w.axes[2:]):
            raise error(f"the weight of `{self.name}` must be [{'in, out' if self.transposed else 'out, in'}, "
                        f"kernel...] with fixed kernel sizes, not {w.describe()}", span)
        out = self._out_channel(x.axis(channel), w, groups, span)
        sizes = self.out_sizes(ns, [a.size.value for a in w.axes[2:]], attrs)
        mapping = _check_targets(self.name, x, attrs, sizes, span)
        if len(ins) == 3 and (ins[2].names != (out.name,) or ins[2].axes[0].size != out.size):
            raise error(f"the bias of `{self.name}` must carry exactly the output channel axis `{out.name}`, "
                        f"but is {ins[2].describe()}", span)
        return [_replace(x, {channel: out, **mapping}, self.name, span)]

    def numpy(self, e, node, ins):
        a = node.attrs
        bias = ins[2] if len(ins) == 3 else None
        extra = dict(output_padding=a["output_padding"]) if self.transposed else {}
        return _lower_numpy(e, node, [ins[0], ins[1], bias], a["channel"], self.kernel_fn, stride=a["stride"],
                            pads=a["pads"], **extra, dilation=a["dilation"], groups=a["groups"])

    def onnx(self, g, node, ins):
        a = node.attrs
        w = node.inputs[1].type
        extra = dict(output_padding=list(a["output_padding"])) if self.transposed else {}
        return _lower_onnx(g, node, ins, a["channel"], self.onnx_op, ins[1:], strides=list(a["stride"]),
                           pads=_onnx_pads(a["pads"]), dilations=list(a["dilation"]), group=a["groups"],
                           kernel_shape=[s.size.value for s in w.axes[2:]], **extra)


@register
class Conv(_ConvBase):
    name = "conv"
    summary = ("N-d convolution over named spatial axes (PyTorch/ONNX Conv); W = [out, in_per_group, *kernel], "
               "keywords stride, padding (a number or `same`), dilation, groups (inferred), channels")
    example = "y = conv(x, weight, bias, stride=2, padding=1 over (h, w) -> (oh, ow))"
    keywords = ("stride", "padding", "dilation", "groups", "channels")
    kernel_fn, onnx_op = "conv_nd", "Conv"

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


# ---- pooling ----------------------------------------------------------------------


class _Pool(OpDef):
    keywords: tuple[str, ...] = ("kernel", "stride", "padding")

    def build(self, b, call):
        ins, kws, over = _parse(b, call, self, (1, 1))
        nd = len(over.axes)
        if "kernel" not in kws:
            raise error(f"`{self.name}` needs `kernel=`", call.span, f"as in `{self.example.split('= ', 1)[1]}`")
        k = _whole(b, kws, "kernel", 1, 1)
        s = _whole(b, kws, "stride", k, 1)  # PyTorch: the stride defaults to the kernel size
        p = _whole(b, kws, "padding", 0, 0)
        if p > k // 2:
            raise error(f"`padding` may be at most half the kernel ({k // 2}), not {p}", kws["padding"].span,
                        "a wider pad would make windows of padding only")
        attrs: dict[str, Any] = dict(spatial=over.axes, kernel=(k,) * nd, stride=(s,) * nd, pads=((p, p),) * nd)
        if "count_include_pad" in self.keywords:
            attrs["count_include_pad"] = _whole(b, kws, "count_include_pad", 1, 0) != 0
        ns = [ins[0].type.axis(a).size.value for a in over.axes]

        def detail(i):
            return f"`{over.axes[i]}` is {ns[i]}, kernel {k}, stride {s}, padding {p}"
        attrs["targets"] = _targets(b, self.name, over, self.out_sizes(ns, attrs), detail)
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
        sizes = self.out_sizes(_spatial_sizes(self.name, x, attrs, span), attrs)
        mapping = _check_targets(self.name, x, attrs, sizes, span)
        return [_replace(x, mapping, self.name, span)]

    def _kw(self, node):
        a = node.attrs
        return dict(kernel=a["kernel"], stride=a["stride"], pads=a["pads"])


@register
class MaxPool(_Pool):
    name = "maxpool"
    summary = "max over sliding windows of the spatial axes (PyTorch MaxPool, ONNX MaxPool); stride defaults to kernel"
    example = "y = maxpool(x, kernel=3, stride=2, padding=1 over (h, w) -> (oh, ow))"

    def numpy(self, e, node, ins):
        return _lower_numpy(e, node, ins, None, "max_pool_nd", **self._kw(node))

    def onnx(self, g, node, ins):
        a = node.attrs
        return _lower_onnx(g, node, ins, None, "MaxPool", [], kernel_shape=list(a["kernel"]),
                           strides=list(a["stride"]), pads=_onnx_pads(a["pads"]))


@register
class AvgPool(_Pool):
    name = "avgpool"
    summary = ("mean over sliding windows of the spatial axes; count_include_pad=1 (PyTorch's default) divides "
               "by the whole window, 0 by the input elements in it")
    example = "y = avgpool(x, kernel=2 over (h, w) -> (oh, ow))"
    keywords = ("kernel", "stride", "padding", "count_include_pad")

    def numpy(self, e, node, ins):
        return _lower_numpy(e, node, ins, None, "avg_pool_nd", **self._kw(node),
                            count_include_pad=node.attrs["count_include_pad"])

    def onnx(self, g, node, ins):
        a = node.attrs
        return _lower_onnx(g, node, ins, None, "AveragePool", [], kernel_shape=list(a["kernel"]),
                           strides=list(a["stride"]), pads=_onnx_pads(a["pads"]),
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
        ins, kws, over = _parse(b, call, self, (1, 1))
        if "scale" not in kws:
            raise error("`upsample` needs `scale=`, a whole number", call.span,
                        f"as in `{self.example.split('= ', 1)[1]}`")
        scale = _whole(b, kws, "scale", 1, 1)
        mode = _word(b, kws["mode"].value) if "mode" in kws else "nearest"
        if mode not in self.modes:
            hint = "write `mode=linear`; it interpolates along every spatial axis" if mode in (
                "bilinear", "trilinear") else f"the modes are {', '.join(self.modes)}"
            raise error(f"`upsample` has no mode `{mode}`", kws["mode"].span, hint)
        attrs: dict[str, Any] = dict(spatial=over.axes, scale=(scale,) * len(over.axes), mode=mode)
        ns = [ins[0].type.axis(a).size.value for a in over.axes]
        attrs["targets"] = _targets(b, self.name, over, [n * scale for n in ns],
                                    lambda i: f"`{over.axes[i]}` is {ns[i]}, scale {scale}")
        return b.emit(self.name, ins, attrs, call.span)

    def infer(self, ins, attrs, span):
        if len(ins) != 1:
            raise error("`upsample` takes one tensor", span)
        if attrs["mode"] == "linear" and ins[0].dtype not in FLOAT_DTYPES:
            raise error(f'`upsample` with mode "linear" needs a floating-point operand, not {ins[0].dtype}', span)
        ns = _spatial_sizes(self.name, ins[0], attrs, span)
        mapping = _check_targets(self.name, ins[0], attrs, [n * s for n, s in zip(ns, attrs["scale"])], span)
        return [_replace(ins[0], mapping, self.name, span)]

    def numpy(self, e, node, ins):
        return _lower_numpy(e, node, ins, None, self.modes[node.attrs["mode"]], scale=node.attrs["scale"])

    def onnx(self, g, node, ins):
        a = node.attrs
        scales = g.const(np.asarray([1.0, 1.0] + [float(s) for s in a["scale"]], dtype=np.float32))
        if a["mode"] == "nearest":
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        return _lower_onnx(g, node, ins, None, "Resize", ["", scales], **attrs)
