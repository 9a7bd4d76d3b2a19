"""Contraction: einsum over named axes.

`a @ b over k` sums the product over the axes `k`; axes both operands carry but `over`
does not name are batch axes (kept, matched by name); the rest are kept from each side.
The result's axes are `a`'s kept axes in order, then `b`'s new ones.

Lowering (both backends): a batched matrix product. The axes fall in four groups: batch B
(in both, kept), M (a only), K (contracted), N (b only). a is transposed to (B, M, K) and b
to (B, K, N), the M, K and N groups are each reshaped into one dimension, MatMul runs, and
the result is reshaped back to (B, M, N) and, only if a's kept axes interleave B and M,
transposed to the result's order. Transposes and reshapes that change nothing are left
out; B stays unmerged (MatMul broadcasts leading dims), and with B empty b is a 2-D
[K, N] matrix: for a weight, onnxruntime folds its Transpose/Reshape at load. onnxruntime's
Einsum is slower than this on every contraction of the examples (see `MATMUL_DTYPES`).
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..axes import FLOAT_DTYPES, INT_DTYPES, Axis, Size, TensorType
from ..diagnostics import error
from .registry import OpDef, check_same_sizes, macs_over, register, require_axes, same_dtype

# The dtypes onnxruntime's CPU MatMul runs; others (i8, u8) keep Einsum.
MATMUL_DTYPES = {"f32", "f64", "f16", "i32", "i64"}


def contract_axes(a: TensorType, b: TensorType, over: tuple[str, ...]) -> tuple:
    kept = [x for x in a.axes if x.name not in over]
    new = [x for x in b.axes if x.name not in over and not a.has(x.name)]
    return tuple(kept + new)


def einsum_spec(a: TensorType, b: TensorType, out: TensorType) -> str:
    letters: dict[str, str] = {}
    for name in a.names + b.names:
        letters.setdefault(name, string.ascii_letters[len(letters)])
    word = lambda t: "".join(letters[n] for n in t.names)
    return f"{word(a)},{word(b)}->{word(out)}"


Groups = list  # a layout: one tuple of axis names per dimension (() is a dimension of size 1)


@dataclass(frozen=True)
class MatmulPlan:
    """How `a @ b over k` runs as one MatMul: operand orders, the groups each is reshaped to,
    the MatMul result's groups, and the order those unfold to before the final transpose."""
    a_order: tuple[str, ...]
    b_order: tuple[str, ...]
    a_groups: Groups
    b_groups: Groups
    mm_groups: Groups
    mm_order: tuple[str, ...]  # (B, M, N): the result's axes after unfolding mm_groups
    n: tuple[str, ...]  # b's new axes, last in the MatMul result (merged into one dimension)
    b_swapped: bool = False  # b is reshaped as (B, N, K) and its last two dimensions swapped (a view)


def matmul_plan(a: TensorType, b: TensorType, over: Sequence[str], a_free: bool = False,
                b_free: bool = False, merge_m: bool = False, swap_b: bool = False) -> MatmulPlan:
    """`a_free`/`b_free`: that operand is a weight, whose transpose costs nothing at run time
    (onnxruntime folds it at load); the contracted axes' order is chosen to spare a transpose
    of the other operand. `merge_m`: with no batch axes, make a 2-D too (np.matmul loops
    over leading dimensions where one BLAS call on [M, K] does it all; onnxruntime's
    MatMul flattens them itself, so ONNX keeps them and needs no run-time shape). `swap_b`:
    NumPy may read b through a transposed view (below)."""
    batch = tuple(n for n in a.names if n not in over and b.has(n))
    m = tuple(n for n in a.names if n not in over and not b.has(n))
    n_ = tuple(n for n in b.names if n not in over and not a.has(n))

    def cost(k: tuple[str, ...]) -> int:
        return ((a.names != batch + m + k) and not a_free) + ((b.names != batch + k + n_) and not b_free)
    k_a = tuple(n for n in a.names if n in over)
    k_b = tuple(n for n in b.names if n in over)
    k = k_b if cost(k_b) < cost(k_a) else k_a
    lead = [(x,) for x in batch]
    rows = lead + [m] if batch or merge_m else [(x,) for x in m] or [()]
    if swap_b and b.names == batch + n_ + k_b and (len(k) == 1 or a.names == batch + m + k_b):
        # NumPy, b stored [B, N, K] (torch.nn.Linear's [out, in]): a transposed view of it
        # goes to BLAS as is, where transposing to [K, N] would copy it at every call.
        return MatmulPlan(a_order=batch + m + k_b, b_order=batch + n_ + k_b, a_groups=rows + [k_b],
                          b_groups=lead + [n_, k_b], mm_groups=rows + [n_], mm_order=batch + m + n_, n=n_,
                          b_swapped=True)
    return MatmulPlan(a_order=batch + m + k, b_order=batch + k + n_, a_groups=rows + [k],
                      b_groups=lead + [k, n_], mm_groups=rows + [n_], mm_order=batch + m + n_, n=n_)


def _singles(order: Sequence[str]) -> Groups:
    return [(x,) for x in order]


def _group_axes(groups: Groups, axes: dict[str, Axis]) -> list[Axis]:
    """One axis per group, its size the product of the group's sizes."""
    out = []
    for grp in groups:
        size = Size.of(1)
        for name in grp:
            size = size * axes[name].size
        out.append(Axis("*".join(grp) or "1", size))
    return out


def _reshape_onnx(g, x: str, src: Groups, dst: Groups, axes: dict[str, Axis]) -> str:
    """Reshape with a constant shape where it can: 0 copies a dimension that stays where it
    is (a symbolic batch), -1 stands for the one symbolic size left; otherwise the shape is
    computed from the inputs' sizes (allowzero: a size may be 0)."""
    if src == dst:
        return x
    dims = _group_axes(dst, axes)
    entries = [0 if i < len(src) and len(grp) == 1 and src[i] == grp else d.size.value
               for i, (grp, d) in enumerate(zip(dst, dims))]
    if sum(e is None for e in entries) <= 1:
        return g.node("Reshape", [x, g.const_i64([-1 if e is None else e for e in entries])])
    return g.node("Reshape", [x, g.shape(dims)], allowzero=1)


def _reshape_numpy(e, x: Any, src: Groups, dst: Groups, axes: dict[str, Axis]) -> Any:
    if src == dst:
        return x
    return e.call("np.reshape", x, tuple(e.size(d.size) for d in _group_axes(dst, axes)))


def lower_contraction(em, a: TensorType, b: TensorType, out: TensorType, xa: Any, xb: Any,
                      plan: MatmulPlan, onnx: bool, bias: Optional[tuple[Any, TensorType]] = None,
                      gemm: bool = False) -> Any:
    """`a @ b` as MatMul (ONNX) or np.matmul (NumPy) through emitter `em`; `bias` (a handle
    and its type, over some of b's new axes) is added to the MatMul result, before it is
    unfolded, as one vector over the merged N dimension. `gemm`: ONNX Gemm (the plan must
    make both operands 2-D) with the bias as its third input."""
    axes = {x.name: x for x in a.axes + b.axes}
    reshape = _reshape_onnx if onnx else _reshape_numpy
    xa = reshape(em, em.align(xa, a, plan.a_order), _singles(plan.a_order), plan.a_groups, axes)
    xb = reshape(em, em.align(xb, b, plan.b_order), _singles(plan.b_order), plan.b_groups, axes)
    if plan.b_swapped:
        xb = em.call("np.swapaxes", xb, -1, -2)
    h = None
    if bias is not None:
        h, t = bias
        if plan.n:
            h = em.align(h, t, plan.n)
            if set(t.names) != set(plan.n):
                h = em.broadcast(h, [axes[n] for n in plan.n])
            h = reshape(em, h, _singles(plan.n), [plan.n], axes)
    if gemm:
        y = em.node("Gemm", [xa, xb] + ([h] if h is not None else []))
    else:
        y = em.node("MatMul", [xa, xb]) if onnx else em.call("np.matmul", xa, xb)
        if h is not None:
            y = em.node("Add", [y, h]) if onnx else em.call("np.add", y, h)
    y = reshape(em, y, plan.mm_groups, _singles(plan.mm_order), axes)
    mm = TensorType(out.dtype, tuple(axes[n] for n in plan.mm_order))
    return em.align(y, mm, out.names)


def _is_param(v) -> bool:
    return v.producer is not None and v.producer.op == "param"


@register
class Contract(OpDef):
    name = "contract"
    summary = "`a @ b over k`: multiply and sum over the named axes (einsum by name)"
    example = "y = (q @ k over head)"
    surface = False  # spelled `@`

    def macs(self, node):
        return macs_over(*(v.type for v in node.inputs))

    def infer(self, ins, attrs, span):
        a, b = ins
        over = attrs["axes"]
        require_axes(a, over, "the left operand of `@`", span)
        require_axes(b, over, "the right operand of `@`", span)
        check_same_sizes(ins, span)
        dtype = same_dtype(ins, "@", span)
        if dtype not in FLOAT_DTYPES | INT_DTYPES:
            raise error(f"`@` needs numeric operands, not {dtype}", span)
        return [TensorType(dtype, contract_axes(a, b, over))]

    def _plan(self, node, onnx: bool) -> MatmulPlan:
        a, b = node.inputs
        return matmul_plan(a.type, b.type, node.attrs["axes"], _is_param(a), _is_param(b), merge_m=not onnx,
                           swap_b=not onnx)

    def numpy(self, e, node, ins):
        a, b = (v.type for v in node.inputs)
        out = node.outputs[0].type
        return [lower_contraction(e, a, b, out, ins[0], ins[1], self._plan(node, False), onnx=False)]

    def onnx(self, g, node, ins):
        a, b = (v.type for v in node.inputs)
        out = node.outputs[0].type
        if a.dtype not in MATMUL_DTYPES:
            return [g.node("Einsum", ins, equation=einsum_spec(a, b, out))]
        return [lower_contraction(g, a, b, out, ins[0], ins[1], self._plan(node, True), onnx=True)]
