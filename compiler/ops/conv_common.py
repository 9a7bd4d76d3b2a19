"""What the spatial ops share (compiler/ops/conv.py: convolutions; compiler/ops/pool.py:
pooling and resampling): reading the surface call (`over (h, w) -> (oh, ow)`, keywords
given per axis), the output axes, and the layouts the NumPy and ONNX lowerings take.

Lowering: NumPy kernels (backends/numpy_runtime_conv.py) take the channel and spatial
axes last; ONNX takes NCHW, so x is transposed (when its layout differs) and its batch
axes are merged into one with a Reshape (when there are none or several), then split
and transposed back. Any number of batch axes is allowed.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from archlang.grammar import ast as A

from ..axes import Axis, Size, TensorType
from ..diagnostics import CompileError, Diagnostic, did_you_mean, error
from ..values import Weak
from .registry import OpDef, require_axes, whole_number

# ---- reading the surface call --------------------------------------------------


def parse_call(b, call, op: "OpDef", n_tensors: tuple[int, int]):
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


def word(b, value) -> Any:
    """A keyword value: a string (`mode="linear"`), or a bare word that names no constant
    (`mode=linear`, `padding=same`; a tensor of that name is no keyword's value, so the word
    wins), else a compile-time value."""
    if isinstance(value, A.Var) and value.name not in b.consts and value.name not in b.env.axes \
            and not isinstance(b.env.values.get(value.name), Weak):
        return value.name
    return b.static(value)


def whole(b, kws, name: str, default: int, minimum: int) -> int:
    kw = kws.get(name)
    if kw is None:
        return default
    return whole_number(b.static(kw.value), name, minimum, kw.value.span)

def per_axis(b, kws, name: str, default: int, minimum: int, axes: tuple[str, ...]) -> tuple[int, ...]:
    """A keyword given once for every spatial axis (`stride=2`) or once per axis (`stride=(2, 1)`)."""
    kw = kws.get(name)
    if kw is None:
        return (default,) * len(axes)
    v = b.static(kw.value)
    if isinstance(v, tuple):
        if len(v) != len(axes):
            raise error(f"`{name}` gives {len(v)} values, but there {'is' if len(axes) == 1 else 'are'} "
                        f"{len(axes)} spatial axes ({', '.join(axes)})", kw.value.span,
                        f"give one per axis, or one number for all, as in `{name}={default}`")
        return tuple(whole_number(x, name, minimum, kw.value.span) for x in v)
    return (whole_number(v, name, minimum, kw.value.span),) * len(axes)


def target_axes(b, op: str, over, sizes: list[int], detail: Callable[[int], str]) -> tuple[Axis, ...]:
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


def check_targets(op: str, x: TensorType, attrs, sizes: list[int], span) -> dict[str, Axis]:
    mapping = {}
    for s, t, n in zip(attrs["spatial"], attrs["targets"], sizes):
        if t.size != Size.of(n):
            raise error(f"axis `{t.name}` is {t.size}, but `{op}` over `{s}` gives {n}", span)
        mapping[s] = t
    return mapping


def replace_axes(x: TensorType, mapping: dict[str, Axis], op: str, span) -> TensorType:
    axes = tuple(mapping.get(a.name, a) for a in x.axes)
    names = [a.name for a in axes]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise error(f"the result of `{op}` would have two axes named `{dup}`", span,
                    "name the output axes apart from the input's other axes")
    return x.with_axes(axes)


def spatial_sizes(op: str, x: TensorType, attrs, span) -> list[int]:
    require_axes(x, attrs["spatial"], f"the input of `{op}`", span)
    sizes = [x.axis(s).size.value for s in attrs["spatial"]]
    if None in sizes:
        raise error(f"`{op}` needs fixed sizes for its spatial axes", span)
    return sizes


# ---- layouts for the kernels ---------------------------------------------------


def layout(node, channel: Optional[str]) -> tuple[list[str], list[str]]:
    """Input order [*batch, (channel), *spatial] and the matching output order."""
    x, y = node.inputs[0].type, node.outputs[0].type
    inner = ([channel] if channel else []) + list(node.attrs["spatial"])
    order = [n for n in x.names if n not in inner] + inner
    return order, [y.names[x.position(n)] for n in order]


def reorder(em, h, names: list[str], y: TensorType):
    """A handle laid out as `names` (y's axes) transposed to y's order."""
    return em.align(h, y.with_axes(y.axis(n) for n in names), y.names)


def lower_numpy(e, node, ins, channel, fn: str, **kw):
    order, out_order = layout(node, channel)
    x = e.align(ins[0], node.inputs[0].type, order)
    return [reorder(e, e.call(fn, x, *ins[1:], **kw), out_order, node.outputs[0].type)]


def lower_onnx(g, node, ins, channel, op_type: str, extra_inputs: list[str], **attrs):
    """Transpose to [*batch, (C), *spatial], make it [N, C, *spatial], run, and undo."""
    order, out_order = layout(node, channel)
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
    return [reorder(g, y, out_order, y_t)]


def onnx_pads(pads) -> list[int]:
    return [p[0] for p in pads] + [p[1] for p in pads]
