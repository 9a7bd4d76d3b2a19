"""`gated_linear`: a gated dense layer, `act(x @ w_gate) * (x @ w_up)` (made by `fuse-gated-mlp`).

    h = gated_linear(x, w_gate, w_up; axes=(embed,), act=silu)   # SwiGLU (LLaMA's MLP)
    h = gated_linear(x, w_gate, w_up; axes=(embed,), act=gelu)   # GeGLU

Both weights have the same axes and share only the contracted ones (`axes`) with `x`; the
result has linear's type. ONNX: two MatMuls (linear's lowering), the activation and a
Mul; or, as `ONNX_CONCAT` says (figures below), one MatMul of `x` against the two weights
concatenated along their one output axis (a Concat of initializers, which onnxruntime
folds at load), a Split, the activation and a Mul. NumPy: two matmuls on 2-D `x`
(np.concatenate of the weights would run at every call, and costs more than it saves).
"""
from __future__ import annotations

from ..axes import FLOAT_DTYPES, Axis, Size, TensorType
from ..diagnostics import error
from .add_norm import stub
from .contract import MATMUL_DTYPES, lower_contraction, matmul_plan
from .registry import OpDef, get, macs_over, register

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu", "sigmoid")

# Measured (ms, best of 7 rounds, x [batch, 128, 1024] f32 against two [1024, 2816]
# weights, silu; ORT 1.32 (ORT_ENABLE_ALL) and NumPy, 2 threads, shared 2-core machine):
#        ORT two MatMuls  ORT Concat+MatMul+Split  NumPy two on 2-D x  NumPy concat per call (3-D x)
#   b1        19.4                20.3                    34.3                 38.1
#   b8       122.7               128.4                   139.6                292.4
# (a first, noisier run: ORT 24.3 / 25.6 at b1, 130.0 / 155.0 at b8). One wide MatMul buys
# onnxruntime nothing and its Split costs a copy, so two MatMuls are the default; True
# emits the concatenated form where the weights have one output axis of static size.
ONNX_CONCAT = False


@register
class GatedLinear(OpDef):
    name, surface = "gated_linear", False
    summary = "a gated dense layer `act(x @ w_gate) * (x @ w_up)` over `axes` (made by fuse-gated-mlp)"
    example = "h = gated_linear(x, w_gate, w_up; axes=(embed,), act=silu)"

    def macs(self, node):
        return Size.of(2) * macs_over(node.inputs[0].type, node.inputs[1].type)

    def infer(self, ins, attrs, span):
        if len(ins) != 3:
            raise error("`gated_linear` takes x, a gate weight and an up weight", span)
        x, wg, wu = ins
        if attrs.get("act") not in ACTIVATIONS:
            raise error(f"`gated_linear` gates with one of {', '.join(ACTIVATIONS)}, not {attrs.get('act')!r}", span)
        if not wg.same_axes(wu) or wg.dtype != wu.dtype:
            raise error(f"the gate weight {wg.describe()} and the up weight {wu.describe()} differ", span)
        out = get("linear").infer([x, wg], {"axes": attrs["axes"]}, span)[0]
        if out.dtype not in FLOAT_DTYPES:
            raise error(f"`gated_linear` needs floating-point operands, not {out.dtype}", span)
        return [out]

    def _two(self, em, node, ins, onnx: bool):
        """act(x @ w_gate) * (x @ w_up) through the registry's own lowerings."""
        x, wg, wu = (v.type for v in node.inputs)
        out = node.outputs[0].type
        lower = (lambda op, n, h: get(op).onnx(em, n, h)[0]) if onnx else (lambda op, n, h: get(op).numpy(em, n, h)[0])
        dense = [lower("linear", stub("linear", [x, w], {"axes": node.attrs["axes"]}, [out]), [ins[0], h])
                 for w, h in ((wg, ins[1]), (wu, ins[2]))]
        return self._gate(lower, node, out, *dense)

    def _gate(self, lower, node, out: TensorType, gate, up):
        act = node.attrs["act"]
        return lower("mul", stub("mul", [out, out], {}, [out]), [lower(act, stub(act, [out], {}, [out]), [gate]), up])

    def numpy(self, e, node, ins):
        return [self._two(e, node, ins, onnx=False)]

    def onnx(self, g, node, ins):
        x, wg, wu = (v.type for v in node.inputs)
        out = node.outputs[0].type
        n = [a for a in wg.names if a not in node.attrs["axes"]]
        if not ONNX_CONCAT or len(n) != 1 or wg.axis(n[0]).size.value is None or x.dtype not in MATMUL_DTYPES:
            return [self._two(g, node, ins, onnx=True)]
        n, size = n[0], wg.axis(n[0]).size.value
        wide = Axis(n, Size.of(2 * size))
        cat_t = TensorType(wg.dtype, tuple(wide if a.name == n else a for a in wg.axes))
        wide_out = TensorType(out.dtype, tuple(wide if a.name == n else a for a in out.axes))
        w = g.node("Concat", [ins[1], g.align(ins[2], wu, wg.names)], axis=wg.position(n))
        plan = matmul_plan(x, cat_t, node.attrs["axes"], b_free=True)
        y = lower_contraction(g, x, cat_t, wide_out, ins[0], w, plan, onnx=True)
        gate, up = g.node("Split", [y, g.const_i64([size, size])], n_outputs=2, axis=out.position(n))
        return [self._gate(lambda op, nd, h: get(op).onnx(g, nd, h)[0], node, out, gate, up)]
