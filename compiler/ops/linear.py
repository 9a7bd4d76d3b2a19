"""`linear`: a dense layer, `x @ w + b`, as one node (made by the `fuse-linear` pass).

    y = linear(x, w, b; axes=(embed,))      # = (x @ w over embed) + b

`w` is a weight sharing only the contracted axes `axes` (K) with `x`; its other axes (N)
are the layer's outputs. The optional bias carries some or all of N. The type rule is
contract's followed by add's: `x`'s kept axes in order, then N. One node per dense layer
keeps the IR readable, gives diagrams one box per layer and later passes (quantization)
one place to act; the lowering below is the one place that decides how a dense layer runs.

ONNX: x @ W2 + b, where W2 is the weight as one 2-D [K, N] matrix (a Transpose/Reshape of
the initializer, which onnxruntime folds at load) and b one vector over merged N; the
alternatives measured are under `ONNX_FORM`. NumPy: one np.matmul on x reshaped to 2-D [M, K] (one BLAS call,
as np.einsum's tensordot path makes), then the bias.
"""
from __future__ import annotations

from ..axes import FLOAT_DTYPES, INT_DTYPES, TensorType
from ..diagnostics import error
from .contract import MATMUL_DTYPES, contract_axes, einsum_spec, lower_contraction, matmul_plan
from .registry import OpDef, check_same_sizes, macs_over, register, require_axes, same_dtype

# How `linear` lowers to ONNX: "matmul-add" (MatMul, Add) or "gemm" (x reshaped to 2-D,
# Gemm with the bias, reshaped back). Measured (ms, min of 5 interleaved rounds, seq 128,
# ORT 1.32, 2 threads, on a shared 2-core machine, so differences under ~20% are noise):
#                        MatMul+Add   Gemm 2-D   FusedMatMul+Add (com.microsoft)
#   b1 GPT-2 qkv 768x2304    8.0        13.5        10.3
#   b1 BERT q 768x768        4.4         7.4         5.5
#   b1 MLP fc 768x3072      17.3        12.0        19.2
#   b8 GPT-2 qkv            83.7        85.5        71.2
#   b8 BERT q               28.2        35.4        27.0
#   b8 MLP fc               70.1        71.6        65.9
# No form wins consistently; MatMul+Add is standard ONNX and needs no run-time reshape of x.
ONNX_FORM = "matmul-add"


@register
class Linear(OpDef):
    name, surface = "linear", False
    summary = "a dense layer `x @ w + b` over the axes `w` shares with `x` (made by the fuse-linear pass)"
    example = "y = linear(x, w, b; axes=(embed,))"

    def macs(self, node):
        return macs_over(node.inputs[0].type, node.inputs[1].type)

    def infer(self, ins, attrs, span):
        if len(ins) not in (2, 3):
            raise error("`linear` takes x, a weight and an optional bias", span)
        x, w = ins[0], ins[1]
        k = attrs["axes"]
        require_axes(x, k, "the input of `linear`", span)
        require_axes(w, k, "the weight of `linear`", span)
        shared = [n for n in w.names if n not in k and x.has(n)]
        if shared:
            raise error(f"the weight of `linear` shares `{shared[0]}` with its input without contracting it", span)
        check_same_sizes(ins, span)
        dtype = same_dtype(ins, "linear", span)
        if dtype not in FLOAT_DTYPES | INT_DTYPES:
            raise error(f"`linear` needs numeric operands, not {dtype}", span)
        out = contract_axes(x, w, k)
        if len(ins) == 3:
            outputs = [n for n in w.names if n not in k]
            extra = [n for n in ins[2].names if n not in outputs]
            if extra:
                raise error(f"the bias of `linear` may only carry the weight's output axes "
                            f"({', '.join(outputs)}), but has `{extra[0]}`", span)
        return [TensorType(dtype, out)]

    def _lower(self, em, node, ins, onnx: bool):
        x, w = node.inputs[0].type, node.inputs[1].type
        plan = matmul_plan(x, w, node.attrs["axes"], b_free=onnx, merge_m=not onnx or ONNX_FORM == "gemm",
                           swap_b=not onnx)
        bias = (ins[2], node.inputs[2].type) if len(ins) == 3 else None
        return lower_contraction(em, x, w, node.outputs[0].type, ins[0], ins[1], plan, onnx, bias,
                                 gemm=onnx and ONNX_FORM == "gemm")

    def numpy(self, e, node, ins):
        return [self._lower(e, node, ins, onnx=False)]

    def onnx(self, g, node, ins):
        x, w = node.inputs[0].type, node.inputs[1].type
        if x.dtype not in MATMUL_DTYPES:
            y = g.node("Einsum", ins[:2], equation=einsum_spec(x, w, node.outputs[0].type))
            if len(ins) == 3:
                y = g.node("Add", [y, g.align(ins[2], node.inputs[2].type, node.outputs[0].type.names)])
            return [y]
        return [self._lower(g, node, ins, onnx=True)]
