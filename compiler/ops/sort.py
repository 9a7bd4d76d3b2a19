"""Ordering along a named axis: `topk`, `argmax` and `argmin`.

    vals, idx = topk(gate, k=2 over expert -> slot)

`topk` is spelled like the ops that compute over an axis and give a new one (`concat(...
over patch -> tokens)`, `conv(... over (h, w) -> (oh, ow))`), not like the positional
`seq -> prev` of `slice` and `pad`: those move data without looking at it, while `topk`
reads the values along `expert` as `max(x over expert)` does (k=1 is a max that keeps a
size-1 axis). The keywords come before `over`, as `conv`'s `stride=` does. `slot` has size
k: a declared `slot` must have that size, an undeclared one is declared by the call.

The entries come largest first (`largest=0`: smallest first) and ties go to the lower
index, as ONNX TopK specifies and as a stable sort gives. The indices are i64 positions
along the old axis, ready for `gather(w, idx over expert)`.

One IR node gives both results: one ONNX TopK, and one call of the NumPy kernel
`topk`, whose tuple the emitter unpacks (the generated module sorts once).
"""
from __future__ import annotations

from archlang.grammar import ast as A

from ..axes import FLOAT_DTYPES, INT_DTYPES, Size, TensorType
from ..diagnostics import error
from .registry import OpDef, OverOneAxis, register, require_axes, whole_number
from .reshape import axis_maps, check_keywords, new_axis

NUMERIC = FLOAT_DTYPES | INT_DTYPES
EXAMPLE_CALL = "vals, idx = topk(gate, k=2 over expert -> slot)"


def _replaced(t: TensorType, axis: str, into) -> tuple:
    """`t`'s axes with `axis` replaced, in place, by `into`."""
    return tuple(into if a.name == axis else a for a in t.axes)


def _count(b, call, into: str, size: Size):
    """The static `k`: the keyword, or the size of a declared target axis."""
    arg = next((a for a in call.args if isinstance(a, A.Keyword) and a.name == "k"), None)
    if arg is None:
        declared = b.env.axes.get(into)
        if declared is not None and declared.size.is_static:
            return declared.size.value
        raise error("`topk` needs `k=`, the number of entries to keep", call.span, f"as in `{EXAMPLE_CALL}`")
    k = whole_number(b.static(arg.value), "k", 1, arg.value.span)
    if size.is_static and k > size.value:
        raise error(f"`k` is {k} but the axis `{call.over.axes[0]}` has only {size.value} entries",
                    arg.value.span, f"k can be at most |{call.over.axes[0]}| = {size.value}")
    return k


def _largest(b, call) -> bool:
    arg = next((a for a in call.args if isinstance(a, A.Keyword) and a.name == "largest"), None)
    if arg is None:
        return True
    v = b.static(arg.value)
    if v not in (0, 1) or isinstance(v, str):
        raise error(f"`largest` must be 1 (the largest entries) or 0 (the smallest), not {v!r}", arg.value.span)
    return bool(v)


@register
class TopK(OpDef):
    name = "topk"
    summary = ("the k largest entries along an axis and their i64 indices, as a new axis of size k: "
               "`vals, idx = topk(x, k=2 over expert -> slot)`; largest first, ties to the lower index "
               "(ONNX TopK); `largest=0` for the k smallest. Spelled with `over` like the other ops that "
               "read values along an axis (`max`, `concat`, `conv`)")
    example = EXAMPLE_CALL

    def build(self, b, call):
        check_keywords(call, ("k", "largest"), "topk")
        maps = axis_maps(call)
        if maps:
            raise error("`topk` takes its axis mapping after `over`", maps[0].span, f"as in `{EXAMPLE_CALL}`")
        tensors = [a for a in call.args if not isinstance(a, A.Keyword)]
        if len(tensors) != 1:
            raise error(f"`topk` takes one tensor, not {len(tensors)}", call.span, f"as in `{EXAMPLE_CALL}`")
        over = call.over
        if over is None or over.target is None:
            raise error("`topk` needs `over axis -> new_axis`: the k entries go along a new axis",
                        over.span if over else call.span, f"as in `{EXAMPLE_CALL}`")
        if len(over.axes) != 1 or len(over.target) != 1:
            raise error("`topk` works along one axis and gives one new axis", over.span, f"as in `{EXAMPLE_CALL}`")
        x = b.tensor(tensors[0])
        axis, into = over.axes[0], over.target[0]
        require_axes(x.type, [axis], "the operand of `topk`", over.span)
        if into != axis and x.type.has(into):
            raise error(f"the tensor already has an axis `{into}`", over.span, "name the new axis differently")
        k = _count(b, call, into, x.type.axis(axis).size)
        target = new_axis(b, into, Size.of(k), over.span)
        largest = _largest(b, call)
        return b.emit("topk", [x], {"axis": axis, "into": target, "k": k, "largest": largest}, call.span)

    def infer(self, ins, attrs, span):
        (x,) = ins
        axis, into = attrs["axis"], attrs["into"]
        require_axes(x, [axis], "the operand of `topk`", span)
        if x.dtype not in NUMERIC:
            raise error(f"`topk` needs a numeric operand, not {x.dtype}", span, "convert first with `cast(x, f32)`")
        if into.name != axis and x.has(into.name):
            raise error(f"the tensor already has an axis `{into.name}`", span)
        size = x.axis(axis).size
        if size.is_static and attrs["k"] > size.value:
            raise error(f"`k` is {attrs['k']} but the axis `{axis}` has only {size.value} entries", span)
        axes = _replaced(x, axis, into)
        return [TensorType(x.dtype, axes), TensorType("i64", axes)]

    def numpy(self, e, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return e.unpack(e.call("topk", ins[0], node.attrs["k"], axis=p, largest=node.attrs["largest"]), 2)

    def onnx(self, g, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        return g.node("TopK", [ins[0], g.const_i64([node.attrs["k"]])], n_outputs=2,
                      axis=p, largest=int(node.attrs["largest"]), sorted=1)


class _ArgExtreme(OverOneAxis):
    operand_dtypes, operand_kind = NUMERIC, "numeric"
    one_axis_help = "to search several, `merge` them into one first"
    onnx_attrs = {"keepdims": 0, "select_last_index": 0}

    def result(self, x, axis):
        return TensorType("i64", x.without([axis]).axes)


@register
class ArgMax(_ArgExtreme):
    name, np_fn, onnx_op = "argmax", "np.argmax", "ArgMax"
    summary = "the i64 index of the largest entry along one axis, which disappears; ties to the lower index"
    example = "best = argmax(logits over vocab)"


@register
class ArgMin(_ArgExtreme):
    name, np_fn, onnx_op = "argmin", "np.argmin", "ArgMin"
    summary = "the i64 index of the smallest entry along one axis, which disappears; ties to the lower index"
    example = "nearest = argmin(dist over code)"
