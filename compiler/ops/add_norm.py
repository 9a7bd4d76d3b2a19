"""Residual add + normalisation as one op with two results (made by `fuse-residual-norm`).

    y, s = add_layernorm(a, b, w, bias; axes=(d,), eps=…)   # s = a + b, y = layernorm(s, w, bias)
    y, s = add_rmsnorm(a, b, w; axes=(d,), eps=…)           # s = a + b, y = rmsnorm(s, w)

A pre-norm transformer block reads its residual stream twice: normalised, as the next
sublayer's input, and as it is, for the next residual add; `s` serves the second read, so
the sum is computed once. The type rule is add's followed by the norm's.

NumPy: the add and the norm as written (a fused kernel gains nothing there). ONNX:
onnxruntime's com.microsoft `SkipLayerNormalization` / `SkipSimplifiedLayerNormalization`
when `ONNX_SKIP_NORM` says so and the operands fit (below), else Add and the norm's own
lowering, which onnxruntime fuses into the same kernel at session creation.
"""
from __future__ import annotations

from ..axes import TensorType
from ..diagnostics import error
from ..ir import Node, Value
from .registry import OpDef, get, register

# Measured (ms, best of 15 rounds of 50 runs, [batch, 128, 768] f32, ORT 1.32, 2 threads,
# ORT_ENABLE_ALL, on a shared 2-core machine; both results are graph outputs, as in a
# pre-norm block, so onnxruntime keeps Add + norm as two kernels):
#                Add + LayerNormalization   SkipLayerNormalization
#   b1                     0.33                     3.32
#   b8                     2.72                     8.68
#                Add + RMSNormalization     SkipSimplifiedLayerNormalization
#   b1                     0.06                     0.26
#   b8                     1.83                     1.78
# (a first run gave the same order: 0.07 / 2.75, 2.03 / 7.92, 0.41 / 0.33, 3.76 / 4.08).
# The contrib kernels are no faster on the CPU provider, the layer-norm one several times
# slower, so the standard ops are the default; True emits the contrib ops where they fit.
ONNX_SKIP_NORM = False


def stub(op: str, ins: list[TensorType], attrs: dict, outs: list[TensorType]) -> Node:
    """A detached node of `op` on values of these types, to lower through its registry record
    (the lowering reads only types and attributes)."""
    return Node(op, [Value(0, t) for t in ins], dict(attrs), [Value(0, t) for t in outs], None)


class _AddNorm(OpDef):
    surface = False
    norm = ""      # the registry op applied to the sum
    skip_op = ""   # onnxruntime's fused form
    with_beta = False

    def infer(self, ins, attrs, span):
        if len(ins) < 2:
            raise error(f"`{self.name}` takes two addends and the norm's affine parameters", span)
        s = get("add").infer(ins[:2], {}, span)[0]
        return [get(self.norm).infer([s] + list(ins[2:]), attrs, span)[0], s]

    def _parts(self, node):
        a, b = (v.type for v in node.inputs[:2])
        y, s = (v.type for v in node.outputs)
        add = stub("add", [a, b], {}, [s])
        norm = stub(self.norm, [s] + [v.type for v in node.inputs[2:]], node.attrs, [y])
        return add, norm

    def numpy(self, e, node, ins):
        add, norm = self._parts(node)
        s = get("add").numpy(e, add, ins[:2])[0]
        # Read twice: bound to one name first, or a generated module would add twice (the
        # emitter has no `bind`; a leading size-1 view and its only row cost no copy).
        (s,) = e.unpack(e.call("np.expand_dims", s, 0), 1)
        return [get(self.norm).numpy(e, norm, [s] + ins[2:])[0], s]

    def onnx(self, g, node, ins):
        fused = self._skip(g, node, ins) if ONNX_SKIP_NORM else None
        if fused is not None:
            return fused
        add, norm = self._parts(node)
        s = get("add").onnx(g, add, ins[:2])[0]
        return [get(self.norm).onnx(g, norm, [s] + ins[2:])[0], s]

    def _skip(self, g, node, ins):
        """The com.microsoft op, or None where it does not apply: standard ops only, an opset
        before LayerNormalization, addends of different axes, or a normalised axis that is
        not the last (it normalises the last dimension only) or is symbolic."""
        a, b = (v.type for v in node.inputs[:2])
        y = node.outputs[0].type
        axes = tuple(node.attrs["axes"])
        if (getattr(g, "target", "ort") == "portable" or g.opset < 17 or a.dtype not in ("f32", "f16")
                or a != b or y != a or y.names[-len(axes):] != axes or len(axes) != 1
                or len(y.axes) not in (2, 3) or y.axes[-1].size.value is None):
            return None
        affine = [g.align(h, v.type, axes) for h, v in zip(ins[2:], node.inputs[2:])]
        if not affine:
            affine = [get(self.norm)._ones(g, node, axes)]
        out = g.node(self.skip_op, [ins[0], ins[1]] + affine, n_outputs=4, domain="com.microsoft",
                     epsilon=get(self.norm).eps(node))
        return [out[0], out[3]]


@register
class AddLayerNorm(_AddNorm):
    name, norm, skip_op = "add_layernorm", "layernorm", "SkipLayerNormalization"
    summary = "`a + b` and its layer norm over the named axes, both results (made by fuse-residual-norm)"
    example = "y, s = add_layernorm(a, b, w, bias; axes=(d,), eps=1e-5)"


@register
class AddRmsNorm(_AddNorm):
    name, norm, skip_op = "add_rmsnorm", "rmsnorm", "SkipSimplifiedLayerNormalization"
    summary = "`a + b` and its RMS norm over the named axes, both results (made by fuse-residual-norm)"
    example = "y, s = add_rmsnorm(a, b, w; axes=(d,), eps=1e-6)"
