"""Mixture-of-experts layers run by dispatch: `expert_linear` and `expert_mlp` (made by
the `dispatch-experts` pass from the gather-then-contract form users write).

    y = expert_linear(x, w, idx; axis=expert, axes=(embed,))   # = x @ gather(w, idx over expert) over embed
    y = expert_mlp(x, w1, w3, w2, idx; axis=expert, axes=(embed,), hidden=(hidden,), act=silu)
      # = expert_linear(silu(expert_linear(x, w1, idx)) * expert_linear(x, w3, idx), w2, idx)

Each position of the index tensor `idx` (a token's `slot`, say) names the expert whose slice
of `w` that row of `x` meets: the value and type are those of the gather-then-contract form
(examples/moe.arch). Written that way the gather copies a whole expert's weights for every
row, so memory traffic grows with rows x k x expert size; these ops group the rows by expert
and run one matrix product per expert and weight, so they cost the arithmetic. `expert_mlp`
is a whole expert MLP (SwiGLU/GeGLU with an up weight, else `act` between two layers), routed
once: the rows are grouped once and their hidden activations never leave expert order.

Rows: `x`'s axes other than `axes` (X) must all be axes of `idx`; the index axes `x` lacks (S,
the `slot` of a first expert layer) repeat each row of `x`. The rows are X then S, flattened,
so row r reads row r // |S| of `x`. `w` is [expert, N..., K...] in any order; N may meet
neither `x` nor `idx`. Negative indices count from the end, as in `gather`.

NumPy: `expert_linear` of backends/numpy_runtime_moe.py, a loop over the experts (`expert_mlp`
is its layers in turn). ONNX (standard ops, opset 17 and up), as `ONNX_FORM` says: the rows
sorted by expert (TopK of the indices, smallest first), one Gather of `x`'s rows in that
order, per expert a Slice of its run and its MatMuls (each expert's weight a Gather +
Transpose of the initializer, which onnxruntime folds at load), a Concat, and one Gather by
the inverse permutation (TopK of the permutation) back to the rows' order.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..axes import Axis, Size, TensorType
from ..diagnostics import error
from .add_norm import stub
from .gated import ACTIVATIONS
from .registry import OpDef, get, macs_over, numpy_dtype, register

DISPATCH_DTYPES = ("f16", "f32", "f64")  # onnxruntime's CPU MatMul runs these; the rule leaves others alone
MAX_EXPERTS = 256  # the ONNX lowering has a MatMul per expert: a vocabulary-sized table is no mixture

# How the ops lower to ONNX: "sort" (above) or "scatter" (per expert and layer: NonZero of
# `idx == e`, a Gather of its rows, MatMul, ScatterND into the output, which writes the whole
# output once per expert; `expert_mlp` then lowers as its layers). Measured by
# benchmarks/moe.py (ms, median of 15 interleaved runs, 8 experts, k=2, embed 512, hidden
# 1408, ORT 1.32, 2 threads, a shared 2-core machine at a load average of 6-10):
#                 expert_mlp   expert_linear per layer   scatter   torch.onnx.export (Mixtral's loop)
#   128 tokens       109.8            183.0               274.7          180.6
#   1024 tokens      491.0            555.2               692.9          466.4
# onnxruntime's com.microsoft MoE routes by itself, but its CPU kernel (1.32) refuses a third
# (up) weight, "FC3 is not implemented for CPU MoE", and takes SwiGLU only with gate and up
# interleaved in one weight (swiglu_fusion=1): Mixtral's three weights do not fit it as they are.
ONNX_FORM = "sort"


def _product(axes) -> Size:
    size = Size.of(1)
    for a in axes:
        size = size * a.size
    return size


class Layout:
    """The axis groups of one routed layer: X, S (rows), N (outputs), K (contracted)."""

    def __init__(self, x: TensorType, w: TensorType, idx: TensorType, axis: str, k: tuple[str, ...]):
        self.k = tuple(w.axis(n) for n in k)
        self.x_rows = tuple(a for a in x.axes if a.name not in k)
        self.s = tuple(a for a in idx.axes if not x.has(a.name))
        self.n = tuple(a for a in w.axes if a.name != axis and a.name not in k)
        self.expert = w.axis(axis)
        self.per_row = _product(self.s)

    def rows_type(self, dtype: str, n) -> TensorType:
        """The result's rows (X, S) with output axes `n`: the order the lowerings produce."""
        return TensorType(dtype, self.x_rows + self.s + tuple(n))


def _names(axes) -> tuple[str, ...]:
    return tuple(a.name for a in axes)


def check_structure(x: TensorType, w: TensorType, idx: TensorType, axis: str, k: tuple[str, ...]) -> Optional[str]:
    """Why these operands are not a routed dense layer (None if they are); the rule's reasons."""
    routed = [n for n in k if idx.has(n)]
    if routed:
        return f"the contraction sums over `{routed[0]}`, an axis of the expert indices"
    loose = [n for n in x.names if n not in k and not idx.has(n)]
    if loose:
        return f"the input carries `{loose[0]}`, which the expert indices lack"
    shared = [n for n in w.names if n != axis and n not in k and x.has(n)]
    if shared:
        return f"the input shares `{shared[0]}` with the expert weights without contracting it"
    experts = w.axis(axis).size.value
    if experts is None:
        return f"the number of experts `{axis}` is not a fixed size"
    if experts > MAX_EXPERTS:
        return f"`{axis}` has {experts:,} entries; dispatch runs one product per expert, up to {MAX_EXPERTS}"
    if x.dtype not in DISPATCH_DTYPES:
        return f"the operands are {x.dtype}; dispatch runs {', '.join(DISPATCH_DTYPES)}"
    return None


@register
class ExpertLinear(OpDef):
    name, surface = "expert_linear", False
    summary = ("a dense layer whose weight each row picks from stacked experts: "
               "`x @ gather(w, idx over expert) over axes`, run as one matrix product per expert "
               "on the rows routed to it (made by dispatch-experts)")
    example = "y = expert_linear(x, w1, chosen; axis=expert, axes=(embed,))"

    def macs(self, node):  # the rows' products only: the gather form's count, none for routing
        return macs_over(node.outputs[0].type, node.inputs[0].type)

    def infer(self, ins, attrs, span):
        if len(ins) != 3:
            raise error("`expert_linear` takes x, the stacked expert weights and the expert indices", span)
        x, w, idx = ins
        axis, k = attrs["axis"], tuple(attrs["axes"])
        gathered = get("gather").infer([w, idx], {"axis": axis}, span)[0]
        out = get("contract").infer([x, gathered], {"axes": k}, span)[0]
        why = check_structure(x, w, idx, axis, k)
        if why is not None:
            raise error(f"`expert_linear`: {why}", span)
        return [out]

    def numpy(self, e, node, ins):
        x, w, idx = (v.type for v in node.inputs)
        lay = Layout(x, w, idx, node.attrs["axis"], tuple(node.attrs["axes"]))
        xr = e.call("np.reshape", e.align(ins[0], x, _names(lay.x_rows + lay.k)), (-1, e.size(_product(lay.k))))
        wt = e.call("np.reshape", e.align(ins[1], w, _names((lay.expert,) + lay.n + lay.k)),
                    (lay.expert.size.value, e.size(_product(lay.n)), e.size(_product(lay.k))))
        ir = e.call("np.reshape", e.align(ins[2], idx, _names(lay.x_rows + lay.s)), (-1,))
        y = e.call("expert_linear", xr, wt, ir, e.size(lay.per_row))
        result = lay.rows_type(x.dtype, lay.n)
        y = e.call("np.reshape", y, e.shape(result.axes))
        return [e.align(y, result, node.outputs[0].type.names)]

    def onnx(self, g, node, ins):
        x, w, idx = (v.type for v in node.inputs)
        lay = Layout(x, w, idx, node.attrs["axis"], tuple(node.attrs["axes"]))
        xr, ir = _rows_onnx(g, lay, x, idx, ins[0], ins[2])
        weight = _expert_weights(g, ins[1], w, lay.expert, _names(lay.n), _names(lay.k))
        run = lambda ex, rows: g.node("MatMul", [rows, weight(ex)])
        y = _dispatch(g, xr, ir, lay, run, Axis("n", _product(lay.n)), numpy_dtype(x.dtype))
        result = lay.rows_type(x.dtype, lay.n)
        y = g.node("Reshape", [y, g.shape(result.axes)], allowzero=1)
        return [g.align(y, result, node.outputs[0].type.names)]


@register
class ExpertMlp(OpDef):
    name, surface = "expert_mlp", False
    summary = ("a routed expert MLP, `act(x @ w_gate[e]) * (x @ w_up[e]) @ w_down[e]` (or without "
               "`w_up`) for each row's expert `e = idx`, the rows grouped by expert once (made by "
               "dispatch-experts)")
    example = "y = expert_mlp(x, w1, w3, w2, chosen; axis=expert, axes=(embed,), hidden=(hidden,), act=silu)"

    def _layers(self, ins: list[TensorType], attrs, span) -> tuple[TensorType, TensorType]:
        """The hidden activation's type and the result's, by expert_linear's type rule."""
        x, weights, idx = ins[0], ins[1:-1], ins[-1]
        axis, k, hidden = attrs["axis"], tuple(attrs["axes"]), tuple(attrs["hidden"])
        if len(weights) not in (2, 3):
            raise error("`expert_mlp` takes x, a gate weight, an optional up weight, a down weight and "
                        "the expert indices", span)
        if attrs.get("act") not in ACTIVATIONS:
            raise error(f"`expert_mlp` activates with one of {', '.join(ACTIVATIONS)}, not {attrs.get('act')!r}", span)
        first = get("expert_linear")
        h = first.infer([x, weights[0], idx], {"axis": axis, "axes": k}, span)[0]
        if len(weights) == 3 and (not weights[1].same_axes(weights[0]) or weights[1].dtype != weights[0].dtype):
            raise error(f"the gate weight {weights[0].describe()} and the up weight {weights[1].describe()} differ", span)
        outs = [n for n in weights[0].names if n != axis and n not in k]
        if sorted(outs) != sorted(hidden):
            raise error(f"`expert_mlp`'s hidden axes are {', '.join(outs)}, not {', '.join(hidden)}", span)
        return h, first.infer([h, weights[-1], idx], {"axis": axis, "axes": hidden}, span)[0]

    def infer(self, ins, attrs, span):
        return [self._layers(ins, attrs, span)[1]]

    def macs(self, node):
        x, out = node.inputs[0].type, node.outputs[0].type
        h = self._layers([v.type for v in node.inputs], node.attrs, node.span)[0]
        return Size.of(len(node.inputs) - 3) * macs_over(h, x) + macs_over(out, h)

    def _in_turn(self, em, node, ins, onnx: bool):
        """The layers one after another, each through its registry lowering."""
        types = [v.type for v in node.inputs]
        h, out = self._layers(types, node.attrs, node.span)
        first = {"axis": node.attrs["axis"], "axes": tuple(node.attrs["axes"])}

        def lower(op, ts, attrs, t, handles):
            record = get(op)
            return (record.onnx if onnx else record.numpy)(em, stub(op, ts, attrs, [t]), handles)[0]
        gate = lower("expert_linear", [types[0], types[1], types[-1]], first, h, [ins[0], ins[1], ins[-1]])
        y = lower(node.attrs["act"], [h], {}, h, [gate])
        if len(ins) == 5:
            up = lower("expert_linear", [types[0], types[2], types[-1]], first, h, [ins[0], ins[2], ins[-1]])
            y = lower("mul", [h, h], {}, h, [y, up])
        down = {"axis": node.attrs["axis"], "axes": tuple(node.attrs["hidden"])}
        return lower("expert_linear", [h, types[-2], types[-1]], down, out, [y, ins[-2], ins[-1]])

    def numpy(self, e, node, ins):
        return [self._in_turn(e, node, ins, onnx=False)]

    def onnx(self, g, node, ins):
        if ONNX_FORM != "sort":
            return [self._in_turn(g, node, ins, onnx=True)]
        types = [v.type for v in node.inputs]
        x, idx, axis = types[0], types[-1], node.attrs["axis"]
        lay = Layout(x, types[1], idx, axis, tuple(node.attrs["axes"]))
        h_t, out_t = self._layers(types, node.attrs, node.span)
        hidden = _names(lay.n)  # the gate weight's order: the down weight contracts them in it
        down = Layout(h_t, types[-2], idx, axis, hidden)
        xr, ir = _rows_onnx(g, lay, x, idx, ins[0], ins[-1])
        k = _names(lay.k)
        gate = _expert_weights(g, ins[1], types[1], lay.expert, hidden, k)
        up = _expert_weights(g, ins[2], types[2], lay.expert, hidden, k) if len(ins) == 5 else None
        w_down = _expert_weights(g, ins[-2], types[-2], lay.expert, _names(down.n), hidden)
        row_t = TensorType(x.dtype, (Axis("rows", Size.of("rows")), Axis("hidden", _product(lay.n))))
        act = get(node.attrs["act"])

        def run(ex: int, rows: str) -> str:
            y = act.onnx(g, stub(act.name, [row_t], {}, [row_t]), [g.node("MatMul", [rows, gate(ex)])])[0]
            if up is not None:
                y = g.node("Mul", [y, g.node("MatMul", [rows, up(ex)])])
            return g.node("MatMul", [y, w_down(ex)])
        y = _dispatch(g, xr, ir, lay, run, Axis("n", _product(down.n)), numpy_dtype(x.dtype))
        result = lay.rows_type(x.dtype, down.n)
        y = g.node("Reshape", [y, g.shape(result.axes)], allowzero=1)
        return [g.align(y, result, out_t.names)]


# ---- ONNX lowering ----------------------------------------------------------------------

def _rows_onnx(g, lay: Layout, x: TensorType, idx: TensorType, xh: str, idxh: str) -> tuple[str, str]:
    """`x` as rows [X, K] and the expert of each result row [X * S], negatives counted from the end."""
    k_flat = Axis("k", _product(lay.k))
    shape = (g.const_i64([-1, k_flat.size.value]) if k_flat.size.is_static
             else g.node("Concat", [g.const_i64([-1]), g.size(k_flat.size)], axis=0))
    xr = g.node("Reshape", [g.align(xh, x, _names(lay.x_rows + lay.k)), shape])
    ir = g.node("Reshape", [g.align(idxh, idx, _names(lay.x_rows + lay.s)), g.const_i64([-1])])
    if idx.dtype != "i64":
        ir = g.node("Cast", [ir], to=g.dtype("i64"))
    experts = lay.expert.size.value
    ir = g.node("Where", [g.node("Less", [ir, g.const_i64(0)]), g.node("Add", [ir, g.const_i64(experts)]), ir])
    return xr, ir


def _expert_weights(g, wh: str, w: TensorType, expert: Axis, n: tuple[str, ...], k: tuple[str, ...]) -> Callable[[int], str]:
    """Expert `ex`'s weight as a [K, N] matrix: a Gather + Transpose that onnxruntime folds at
    load when `w` is an initializer."""
    sizes = g.shape([Axis("n", _product(w.axis(a) for a in n)), Axis("k", _product(w.axis(a) for a in k))])
    flat = g.node("Reshape", [g.align(wh, w, (expert.name,) + n + k),
                              g.node("Concat", [g.const_i64([expert.size.value]), sizes], axis=0)])
    return lambda ex: g.node("Transpose", [g.node("Gather", [flat, g.const_i64(ex)], axis=0)], perm=[1, 0])


def _dispatch(g, xr: str, ir: str, lay: Layout, run: Callable[[int, str], str], n_flat: Axis, dtype) -> str:
    """[rows, N]: `run(e, rows)` on the rows routed to each expert e, in the rows' order."""
    experts = lay.expert.size.value
    if ONNX_FORM == "scatter":
        return _scatter_form(g, xr, ir, run, experts, lay.per_row, n_flat, dtype)
    everything = g.node("Shape", [ir])
    _, order = g.node("TopK", [ir, everything], n_outputs=2, axis=0, largest=0, sorted=1)
    rows = g.node("Gather", [xr, _x_row(g, order, lay.per_row)], axis=0)
    hits = g.node("Cast", [g.node("Equal", [g.node("Unsqueeze", [ir, g.const_i64([1])]),
                                             g.const_i64(np.arange(experts))])], to=g.dtype("i64"))
    counts = g.node("ReduceSum", [hits, g.const_i64([0])], keepdims=0)
    ends = g.node("CumSum", [counts, g.const_i64(0)])
    starts = g.node("Sub", [ends, counts])
    parts = []
    for ex in range(experts):
        at = g.const_i64([ex])
        parts.append(run(ex, g.node("Slice", [rows, g.node("Gather", [starts, at]), g.node("Gather", [ends, at]),
                                              g.const_i64([0])])))
    ys = g.node("Concat", parts, axis=0) if len(parts) > 1 else parts[0]
    _, back = g.node("TopK", [order, everything], n_outputs=2, axis=0, largest=0, sorted=1)
    return g.node("Gather", [ys, back], axis=0)


def _scatter_form(g, xr: str, ir: str, run, experts: int, per_row: Size, n_flat: Axis, dtype) -> str:
    """[rows, N]: per expert, its rows found (NonZero), run and scattered into place."""
    shape = g.node("Concat", [g.node("Shape", [ir]), g.size(n_flat.size)], axis=0)
    y = g.node("Expand", [g.const(np.zeros((1, 1), dtype=dtype)), shape])
    for ex in range(experts):
        at = g.node("Transpose", [g.node("NonZero", [g.node("Equal", [ir, g.const_i64(ex)])])], perm=[1, 0])
        rows = g.node("Gather", [xr, _x_row(g, g.node("Reshape", [at, g.const_i64([-1])]), per_row)], axis=0)
        y = g.node("ScatterND", [y, at, run(ex, rows)])
    return y


def _x_row(g, rows: str, per_row: Size) -> str:
    """Row r of the result reads row r // |S| of x."""
    return rows if per_row == Size.of(1) else g.node("Div", [rows, g.size(per_row)])
