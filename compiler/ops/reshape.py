"""Rearrangement: split and merge axes, slice, select, concatenate, pad, stack, unstack.

Each op that produces a new axis names it (`seq -> prev`). A name declared with `axis`
must have the size the op produces; an undeclared name is declared by the op, in the
current block, with that size.
"""
from __future__ import annotations

import math

import numpy as np

from archlang.grammar import ast as A

from ..axes import Axis, Size, TensorType
from ..diagnostics import error
from .registry import OpDef, check_same_sizes, register, require_axes, same_dtype


def new_axis(b, name: str, size: Size, span) -> Axis:
    """The axis `name` with `size`: checked against its declaration, or declared here."""
    if name in b.env.axes:
        ax = b.env.axes[name]
        if ax.size != size:
            from ..diagnostics import CompileError, Diagnostic
            d = Diagnostic(f"this gives axis `{name}` size {size}, but `{name}` is declared as {ax.size}", span)
            raise CompileError(d.note(f"`{name}` declared here", b.env.axis_spans.get(name)))
        return ax
    ax = Axis(name, size)
    b.env.axes[name] = ax
    b.env.axis_spans[name] = span
    return ax


def axis_maps(call) -> list[A.AxisMap]:
    return [a for a in call.args if isinstance(a, A.AxisMap)]


def kw(b, call, name, default=None):
    for a in call.args:
        if isinstance(a, A.Keyword) and a.name == name:
            return b.static(a.value)
    return default


def check_keywords(call, allowed: tuple[str, ...], op: str) -> None:
    from ..diagnostics import did_you_mean
    for a in call.args:
        if isinstance(a, A.Keyword) and a.name not in allowed:
            raise error(f"`{op}` takes no keyword `{a.name}`", a.span, did_you_mean(a.name, allowed))


def _reshape_numpy(e, node, ins):
    return [e.call("np.reshape", ins[0], e.shape(node.outputs[0].type.axes))]


def _reshape_onnx(g, node, ins):
    # allowzero: a symbolic axis of size 0 is a size, not Reshape's "copy this dim"
    return [g.node("Reshape", [ins[0], g.shape(node.outputs[0].type.axes)], allowzero=1)]


@register
class Split(OpDef):
    name = "split"
    summary = "split one axis into several: `split(x, embed -> (heads, head))`"
    example = "y = split(x, embed -> (heads, head))"

    def build(self, b, call):
        maps = axis_maps(call)
        if len(call.args) != 2 or len(maps) != 1 or len(maps[0].source) != 1:
            raise error("`split` takes a tensor and `axis -> (a, b, ...)`", call.span)
        m = maps[0]
        x = b.tensor(call.args[0])
        require_axes(x.type, m.source, "the split tensor", m.span)
        targets = [b.axis(n, m.span) for n in m.target]
        total = math.prod((t.size for t in targets[1:]), start=targets[0].size) if targets else Size.of(1)
        src = x.type.axis(m.source[0])
        if total != src.size:
            raise error(f"`{src.name}` is {src.size} but {' * '.join(m.target)} is {total}", m.span)
        return b.emit("split", [x], {"axis": src.name, "into": tuple(targets)}, call.span)

    def infer(self, ins, attrs, span):
        x = ins[0]
        p = x.position(attrs["axis"])
        clash = [t.name for t in attrs["into"] if x.has(t.name)]
        if clash:
            raise error(f"the tensor already has an axis `{clash[0]}`", span)
        return [x.with_axes(x.axes[:p] + tuple(attrs["into"]) + x.axes[p + 1:])]

    numpy = staticmethod(lambda e, node, ins: _reshape_numpy(e, node, ins))
    onnx = staticmethod(lambda g, node, ins: _reshape_onnx(g, node, ins))


@register
class Merge(OpDef):
    name = "merge"
    summary = "merge several axes into one, first axis outermost: `merge(x, (heads, head) -> embed)`"
    example = "x = merge(y, (heads, head) -> embed)"

    def build(self, b, call):
        maps = axis_maps(call)
        if len(call.args) != 2 or len(maps) != 1 or len(maps[0].target) != 1:
            raise error("`merge` takes a tensor and `(a, b, ...) -> axis`", call.span)
        m = maps[0]
        x = b.tensor(call.args[0])
        require_axes(x.type, m.source, "the merged tensor", m.span)
        sizes = [x.type.axis(n).size for n in m.source]
        total = sizes[0]
        for s in sizes[1:]:
            total = total * s
        target = new_axis(b, m.target[0], total, m.span)
        # Bring the merged axes together, in the order given, where the first one is.
        first = min(x.type.position(n) for n in m.source)
        rest = [n for n in x.type.names if n not in m.source]
        order = tuple(rest[:first] + list(m.source) + rest[first:])
        if order != x.type.names:
            x = b.emit("transpose", [x], {"order": order}, call.span)[0]
        return b.emit("merge", [x], {"axes": tuple(m.source), "into": target}, call.span)

    def infer(self, ins, attrs, span):
        x = ins[0]
        p = x.position(attrs["axes"][0])
        if x.names[p:p + len(attrs["axes"])] != tuple(attrs["axes"]):  # the builder transposes them together
            raise error(f"`merge` needs {', '.join(attrs['axes'])} side by side in that order, not in "
                        f"{x.describe()}", span)
        if x.has(attrs["into"].name) and attrs["into"].name not in attrs["axes"]:
            raise error(f"the tensor already has an axis `{attrs['into'].name}`", span)
        return [x.with_axes(x.axes[:p] + (attrs["into"],) + x.axes[p + len(attrs["axes"]):])]

    numpy = staticmethod(lambda e, node, ins: _reshape_numpy(e, node, ins))
    onnx = staticmethod(lambda g, node, ins: _reshape_onnx(g, node, ins))


def _bound(v: int, size: Size) -> Size:
    return size + Size.of(v) if v < 0 else Size.of(v)


@register
class Slice(OpDef):
    name = "slice"
    summary = "a range along one axis, as a new axis: `slice(x, seq -> prev, start=0, end=-1, step=1)`"
    example = "y = slice(x, seq -> head3, start=0, end=3)"

    def build(self, b, call):
        check_keywords(call, ("start", "end", "step"), "slice")
        maps = axis_maps(call)
        pos = [a for a in call.args if not isinstance(a, (A.Keyword, A.AxisMap))]
        if len(maps) != 1 or len(maps[0].source) != 1 or len(maps[0].target) != 1 or len(pos) not in (1, 2, 3):
            raise error("`slice` takes a tensor, `axis -> new_axis`, and start/end (`start=`, `end=`, `step=`)",
                        call.span)
        x = b.tensor(pos[0])
        m = maps[0]
        require_axes(x.type, m.source, "the sliced tensor", m.span)
        size = x.type.axis(m.source[0]).size
        start = kw(b, call, "start", b.static(pos[1]) if len(pos) > 1 else 0)
        end = kw(b, call, "end", b.static(pos[2]) if len(pos) > 2 else None)
        step = kw(b, call, "step", 1)
        if any(not isinstance(v, int) for v in (start, step)) or (end is not None and not isinstance(end, int)):
            raise error("`slice` bounds must be integers", call.span)
        if step < 1:
            raise error("`slice` step must be positive", call.span)
        lo = _bound(start, size)
        hi = size if end is None else _bound(end, size)
        if size.is_static:
            n = len(range(*slice(start, end, step).indices(size.value)))
            length = Size.of(n)
        elif step == 1:
            length = hi - lo
        else:
            length = (hi - lo + Size.of(step - 1)).floordiv(Size.of(step))
            if length is None:
                raise error("a strided slice of a symbolic axis needs a static size", call.span)
        if length.is_static and (length.value or 0) <= 0:
            raise error(f"this slice of `{m.source[0]}` (size {size}) is empty", call.span)
        target = new_axis(b, m.target[0], length, m.span)
        return b.emit("slice", [x], {"axis": m.source[0], "into": target, "start": start,
                                     "end": end, "step": step}, call.span)

    def infer(self, ins, attrs, span):
        x = ins[0]
        if x.has(attrs["into"].name):
            raise error(f"the tensor already has an axis `{attrs['into'].name}`", span)
        p = x.position(attrs["axis"])
        return [x.with_axes(x.axes[:p] + (attrs["into"],) + x.axes[p + 1:])]

    def numpy(self, e, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return [e.call("slice_axis", ins[0], p, node.attrs["start"], node.attrs["end"], node.attrs["step"])]

    def onnx(self, g, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        end = node.attrs["end"] if node.attrs["end"] is not None else np.iinfo(np.int64).max
        return [g.node("Slice", [ins[0], g.const_i64([node.attrs["start"]]), g.const_i64([end]),
                                 g.const_i64([p]), g.const_i64([node.attrs["step"]])])]


@register
class Select(OpDef):
    name = "select"
    summary = "one index along an axis, dropping it: `select(x, tokens, 0)` (negative counts from the end)"
    example = "cls = select(x, tokens, 0)"

    def build(self, b, call):
        if len(call.args) != 3 or not isinstance(call.args[1], A.Var):
            raise error("`select` takes a tensor, an axis and an index, as in `select(x, tokens, 0)`", call.span)
        x = b.tensor(call.args[0])
        axis = call.args[1].name
        require_axes(x.type, [axis], "the tensor", call.args[1].span)
        index = b.static(call.args[2])
        size = x.type.axis(axis).size
        if not isinstance(index, int):
            raise error("the index of `select` must be an integer", call.args[2].span)
        if size.is_static and not -size.value <= index < size.value:
            raise error(f"index {index} is out of range for `{axis}` (size {size})", call.args[2].span)
        return b.emit("select", [x], {"axis": axis, "index": index}, call.span)

    def infer(self, ins, attrs, span):
        return [ins[0].without([attrs["axis"]])]

    def numpy(self, e, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return [e.call("np.take", ins[0], node.attrs["index"], axis=p)]

    def onnx(self, g, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return [g.node("Gather", [ins[0], g.const(np.asarray(node.attrs["index"], np.int64))], axis=p)]


@register
class Concat(OpDef):
    name = "concat"
    summary = ("join along an axis: `concat(cls, x over patch -> tokens)`; an operand without the axis "
               "adds one slice, and other axes broadcast by name")
    example = "t = concat(cls, x over patch -> tokens)"

    def build(self, b, call):
        if call.over is None or call.over.target is None or len(call.over.target) != 1:
            raise error("`concat` needs `over axis -> new_axis` (or `over (a, b) -> new_axis`)", call.span)
        xs = [b.tensor(a) for a in call.args]
        if len(xs) < 2:
            raise error("`concat` joins at least two tensors", call.span)
        sources = call.over.axes
        total = Size.of(0)
        joined = []
        for x, a in zip(xs, call.args):
            have = [s for s in sources if x.type.has(s)]
            if len(have) > 1:
                raise error(f"this operand has both `{have[0]}` and `{have[1]}`; it may have one axis to join",
                            a.span)
            total = total + (x.type.axis(have[0]).size if have else Size.of(1))
            joined.append(have[0] if have else None)
        target = new_axis(b, call.over.target[0], total, call.over.span)
        return b.emit("concat", xs, {"axes": tuple(joined), "into": target}, call.span)

    def infer(self, ins, attrs, span):
        same_dtype(ins, "concat", span)
        into = attrs["into"]
        others = [t.without([a] if a else []) for t, a in zip(ins, attrs["axes"])]
        check_same_sizes(others, span)
        for t in others:
            if t.has(into.name):
                raise error(f"an operand already has the axis `{into.name}`", span)
        layout: list[Axis] = []
        for t, a in zip(ins, attrs["axes"]):
            for ax in t.axes:
                item = into if ax.name == a else ax
                if item not in layout:
                    layout.append(item)
        if into not in layout:
            layout.insert(0, into)
        return [TensorType(ins[0].dtype, tuple(layout))]

    def _pieces(self, em, node, ins):
        """Each operand renamed to the new axis, aligned to the result layout and broadcast."""
        out = node.outputs[0].type
        into = node.attrs["into"].name
        pieces = []
        for h, v, a in zip(ins, node.inputs, node.attrs["axes"]):
            t = v.type
            if a is not None:
                t = t.with_axes(Axis(into, ax.size) if ax.name == a else ax for ax in t.axes)
            aligned = em.align(h, t, out.names)
            full = [Axis(ax.name, ax.size if ax.name != into else Size.of(1)) for ax in out.axes]
            if a is not None:
                full = [Axis(ax.name, v.type.axis(a).size) if ax.name == into else ax for ax in full]
            if len(t.axes) != len(out.axes):
                aligned = em.broadcast(aligned, full)
            pieces.append(aligned)
        return pieces, out.position(into)

    def numpy(self, e, node, ins):
        pieces, p = self._pieces(e, node, ins)
        return [e.call("np.concatenate", pieces, axis=p)]

    def onnx(self, g, node, ins):
        pieces, p = self._pieces(g, node, ins)
        return [g.node("Concat", pieces, axis=p)]


@register
class Pad(OpDef):
    name = "pad"
    summary = "pad one axis, as a new axis: `pad(x, seq -> padded, before=1, after=0, value=0)`"
    example = "y = pad(x, seq -> padded, before=2, after=0)"

    def build(self, b, call):
        check_keywords(call, ("before", "after", "value", "mode"), "pad")
        maps = axis_maps(call)
        pos = [a for a in call.args if not isinstance(a, (A.Keyword, A.AxisMap))]
        if len(maps) != 1 or len(pos) != 1 or len(maps[0].source) != 1 or len(maps[0].target) != 1:
            raise error("`pad` takes a tensor, `axis -> new_axis`, and `before=`, `after=`", call.span)
        x = b.tensor(pos[0])
        m = maps[0]
        require_axes(x.type, m.source, "the padded tensor", m.span)
        before, after = kw(b, call, "before", 0), kw(b, call, "after", 0)
        value, mode = kw(b, call, "value", 0), kw(b, call, "mode", "constant")
        if not isinstance(before, int) or not isinstance(after, int) or before < 0 or after < 0:
            raise error("`before` and `after` must be non-negative integers", call.span)
        if mode not in ("constant", "reflect", "edge"):
            raise error(f"`pad` mode must be \"constant\", \"reflect\" or \"edge\", not {mode!r}", call.span)
        size = x.type.axis(m.source[0]).size + Size.of(before + after)
        target = new_axis(b, m.target[0], size, m.span)
        return b.emit("pad", [x], {"axis": m.source[0], "into": target, "before": before, "after": after,
                                   "value": float(value), "mode": mode}, call.span)

    def infer(self, ins, attrs, span):
        x = ins[0]
        p = x.position(attrs["axis"])
        return [x.with_axes(x.axes[:p] + (attrs["into"],) + x.axes[p + 1:])]

    def numpy(self, e, node, ins):
        t = node.inputs[0].type
        widths = tuple((node.attrs["before"], node.attrs["after"]) if n == node.attrs["axis"] else (0, 0)
                       for n in t.names)
        if node.attrs["mode"] == "constant":
            return [e.call("np.pad", ins[0], widths, constant_values=node.attrs["value"])]
        return [e.call("np.pad", ins[0], widths, mode=node.attrs["mode"])]

    def onnx(self, g, node, ins):
        t = node.inputs[0].type
        p = t.position(node.attrs["axis"])
        pads = [0] * (2 * len(t.axes))
        pads[p], pads[p + len(t.axes)] = node.attrs["before"], node.attrs["after"]
        from .registry import numpy_dtype
        value = g.const(np.asarray(node.attrs["value"], dtype=numpy_dtype(t.dtype)))
        return [g.node("Pad", [ins[0], g.const_i64(pads), value], mode=node.attrs["mode"])]


@register
class Stack(OpDef):
    name = "stack"
    summary = "stack tensors of the same axes along a new leading axis: `stack(q, k, v over three)`"
    example = "qkv = stack(q, k, v over three)"

    def build(self, b, call):
        if call.over is None or len(call.over.axes) != 1 or call.over.target:
            raise error("`stack` needs `over new_axis`", call.span)
        xs = [b.tensor(a) for a in call.args]
        ax = new_axis(b, call.over.axes[0], Size.of(len(xs)), call.over.span)
        return b.emit("stack", xs, {"axis": ax}, call.span)

    def infer(self, ins, attrs, span):
        same_dtype(ins, "stack", span)
        for t in ins[1:]:
            if not t.same_axes(ins[0]):
                raise error(f"`stack` needs operands with the same axes: {ins[0]} and {t}", span)
        if ins[0].has(attrs["axis"].name):
            raise error(f"the operands already have an axis `{attrs['axis'].name}`", span)
        return [ins[0].with_axes((attrs["axis"],) + ins[0].axes)]

    def numpy(self, e, node, ins):
        names = node.inputs[0].type.names
        return [e.call("np.stack", [e.align(h, v.type, names) for h, v in zip(ins, node.inputs)], axis=0)]

    def onnx(self, g, node, ins):
        names = node.inputs[0].type.names
        zero = g.const_i64([0])
        return [g.node("Concat", [g.node("Unsqueeze", [g.align(h, v.type, names), zero])
                                  for h, v in zip(ins, node.inputs)], axis=0)]


@register
class Unstack(OpDef):
    name = "unstack"
    summary = "the slices along an axis, as separate values: `q, k, v = unstack(qkv over three)`"
    example = "q, k, v = unstack(qkv over three)"

    def build(self, b, call):
        if len(call.args) != 1 or call.over is None or len(call.over.axes) != 1 or call.over.target:
            raise error("`unstack` takes a tensor and `over axis`", call.span)
        x = b.tensor(call.args[0])
        axis = call.over.axes[0]
        require_axes(x.type, [axis], "the unstacked tensor", call.over.span)
        n = x.type.axis(axis).size.value
        if n is None:
            raise error(f"`unstack` needs a static size; `{axis}` is {x.type.axis(axis).size}", call.span)
        if n > 64:
            raise error(f"`unstack` over `{axis}` would make {n} values; use `select` or `slice`", call.span)
        return b.emit("unstack", [x], {"axis": axis, "count": n}, call.span)

    def infer(self, ins, attrs, span):
        return [ins[0].without([attrs["axis"]])] * attrs["count"]

    def numpy(self, e, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return [e.call("np.take", ins[0], i, axis=p) for i in range(node.attrs["count"])]

    def onnx(self, g, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return [g.node("Gather", [ins[0], g.const(np.asarray(i, np.int64))], axis=p)
                for i in range(node.attrs["count"])]
