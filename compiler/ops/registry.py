"""The op registry: each op is defined once, with its type rule and both lowerings.

An op record (`OpDef` subclass, registered with `@register`) carries:
- `name`: how it is spelled in .arch and in the IR;
- `summary` and `example` (a tested .arch snippet, used by docs/ops.md);
- `build(b, call)`: turns a surface call into IR nodes through the builder `b`
  (the default takes tensor arguments, keyword constants and the `over` axes);
- `infer(ins, attrs, span)`: the output types, or a CompileError naming the axes;
- `numpy(e, node, ins)`: lowering through a NumPy emitter (see `NumpyEmitter`);
- `onnx(g, node, ins)`: lowering through an ONNX emitter (see `OnnxEmitter`);
- `macs(node)`: multiply-accumulates per inference, for `archc summary` (zero by default:
  only contractions count, as in torch's FlopCounterMode and torchinfo).

Lowerings speak to small emitter interfaces, so `compiler/` never imports onnx and the
NumPy lowering serves both the in-process evaluator and the generated module.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence

import numpy as np

from archlang.grammar.ast import Span

from ..axes import Axis, Size, TensorType
from ..diagnostics import error

if TYPE_CHECKING:
    from archlang.grammar import ast

    from ..build import Builder
    from ..ir import Graph, Node, Value


class NumpyEmitter(Protocol):
    """What a NumPy lowering may ask for. Handles are opaque (arrays or code strings)."""

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """`fn` is `np.<name>` or a helper of backends/numpy_runtime.py."""

    def align(self, x: Any, src: TensorType, dst: Sequence[str]) -> Any:
        """Transpose `x` to the order of `dst` and insert size-1 dims for axes it lacks."""

    def shape(self, axes: Sequence[Axis]) -> Any:
        """A shape tuple for these axes (symbolic sizes resolved at run time)."""

    def size(self, size: Any) -> Any:
        """One size as an int (symbolic sizes resolved at run time)."""

    def broadcast(self, x: Any, axes: Sequence[Axis]) -> Any:
        """Broadcast an aligned tensor to the sizes of `axes`."""

    def const(self, value: np.ndarray) -> Any:
        """A constant array."""

    def param(self, name: str) -> Any:
        """The parameter tensor of that hierarchical name."""

    def function(self, graph: "Graph") -> Any:
        """A callable running a body graph: its inputs in order in, a tuple of its outputs out."""

    def unpack(self, x: Any, n: int) -> list[Any]:
        """The n items of a tuple-valued handle, computing it once."""


class OnnxEmitter(Protocol):
    opset: int
    target: str  # "ort" (com.microsoft ops allowed) or "portable" (standard ops only)
    attention_form: str  # "standard" or "matmul": see backends/onnx_export.py

    def node(self, op_type: str, inputs: Sequence[str], n_outputs: int = 1, domain: str = "",
             **attrs: Any) -> Any:
        """Add a node; returns its output name (or a list when n_outputs > 1)."""

    def const(self, value: np.ndarray) -> str:
        """A constant tensor (an initializer), deduplicated by content."""

    def align(self, x: str, src: TensorType, dst: Sequence[str]) -> str:
        """As NumpyEmitter.align."""

    def shape(self, axes: Sequence[Axis]) -> str:
        """A 1-D int64 tensor holding the sizes of these axes."""

    def size(self, size: Any) -> str:
        """A 1-D int64 tensor of one element holding one size."""

    def broadcast(self, x: str, axes: Sequence[Axis]) -> str:
        """As NumpyEmitter.broadcast."""

    def const_i64(self, values: Any) -> str:
        """An int64 constant."""

    def scalar(self, value: float, dtype: str) -> str:
        """A scalar constant of an .arch dtype."""

    def dtype(self, dtype: str) -> int:
        """The ONNX element type of an .arch dtype."""

    def param(self, name: str) -> str:
        """The initializer of that hierarchical parameter name."""

    def subgraph(self, graph: "Graph", inputs: Sequence[str], outer: Sequence[str]) -> Any:
        """A body graph as an ONNX GraphProto attribute: its first inputs become the subgraph's
        inputs (named `inputs`' types without the scanned axis), the rest read the
        enclosing graph's tensors `outer` by name."""

    def branch(self, name: str, fill: Any, types: Sequence[TensorType]) -> Any:
        """A subgraph without inputs, for an If: `fill(emitter)` adds its nodes and returns its
        outputs, of these types."""


REGISTRY: dict[str, "OpDef"] = {}


def register(cls: type["OpDef"]) -> type["OpDef"]:
    op = cls()
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name} defined twice")
    REGISTRY[op.name] = op
    return cls


def get(name: str) -> "OpDef":
    return REGISTRY[name]


class OpDef(ABC):
    name: str = ""
    summary: str = ""
    example: str = ""
    surface: bool = True  # callable from .arch by its name

    # -- building from a surface call --
    def build(self, b: "Builder", call: "ast.Call") -> list["Value"]:
        """Default: tensor arguments in order, keyword constants as attrs, `over` as `axes`."""
        from archlang.grammar import ast as A
        inputs = [b.tensor(a) for a in call.args if not isinstance(a, A.Keyword)]
        attrs: dict[str, Any] = {k.name: b.static(k.value) for k in call.args if isinstance(k, A.Keyword)}
        if call.over is not None:
            if call.over.target is not None:
                raise error(f"`{self.name}` takes `over axes`, not an axis mapping", call.over.span)
            attrs["axes"] = call.over.axes
        self.check_attrs(attrs, call.span)
        return b.emit(self.name, inputs, attrs, call.span)

    allowed_attrs: tuple[str, ...] = ()
    required_attrs: tuple[str, ...] = ()

    def check_attrs(self, attrs: dict[str, Any], span: Optional[Span]) -> None:
        for k in attrs:
            if k not in self.allowed_attrs:
                from ..diagnostics import did_you_mean
                what = "`over`" if k == "axes" else f"keyword `{k}`"
                raise error(f"`{self.name}` takes no {what}", span, did_you_mean(k, self.allowed_attrs))
        for k in self.required_attrs:
            if k not in attrs:
                what = "an `over` clause" if k == "axes" else f"keyword `{k}=`"
                raise error(f"`{self.name}` needs {what}", span)

    @abstractmethod
    def infer(self, ins: list[TensorType], attrs: dict[str, Any], span: Optional[Span]) -> list[TensorType]:
        """Output types, or raise a CompileError naming the axes involved."""

    @abstractmethod
    def numpy(self, e: NumpyEmitter, node: "Node", ins: list[Any]) -> list[Any]:
        """Lower through a NumPy emitter; returns one handle per output."""

    @abstractmethod
    def onnx(self, g: OnnxEmitter, node: "Node", ins: list[str]) -> list[str]:
        """Lower through an ONNX emitter; returns one tensor name per output."""

    def macs(self, node: "Node") -> Size:
        """Multiply-accumulates one run of this node costs, a polynomial in the symbolic sizes.
        Only contractions (matmul, conv, attention) count; elementwise work, norms and
        softmax are left out, as torch's FlopCounterMode and torchinfo leave them out."""
        return Size.of(0)


class OverOneAxis(OpDef):
    """An op of one tensor over exactly one named axis, lowered to a NumPy function and an
    ONNX op that both take the axis's position (softmax, argmax, ...). `operand_dtypes` and
    `result` say what it accepts and returns."""
    allowed_attrs = ("axes",)
    required_attrs = ("axes",)
    np_fn = ""
    onnx_op = ""
    onnx_attrs: dict = {}
    operand_dtypes: frozenset = frozenset()
    operand_kind = ""  # "floating-point", "numeric": for the message
    one_axis_help: Optional[str] = None

    def infer(self, ins, attrs, span):
        if len(ins) != 1:
            raise error(f"`{self.name}` takes one tensor and `over` one axis", span)
        if len(attrs["axes"]) != 1:
            raise error(f"`{self.name}` works over exactly one axis", span, self.one_axis_help)
        require_axes(ins[0], attrs["axes"], f"the operand of `{self.name}`", span)
        if ins[0].dtype not in self.operand_dtypes:
            raise error(f"`{self.name}` needs a {self.operand_kind} operand, not {ins[0].dtype}", span,
                        "convert first with `cast(x, f32)`")
        return [self.result(ins[0], attrs["axes"][0])]

    def result(self, x: TensorType, axis: str) -> TensorType:
        return x

    def numpy(self, e, node, ins):
        return [e.call(self.np_fn, ins[0], axis=node.inputs[0].type.position(node.attrs["axes"][0]))]

    def onnx(self, g, node, ins):
        return [g.node(self.onnx_op, ins, axis=node.inputs[0].type.position(node.attrs["axes"][0]),
                       **self.onnx_attrs)]


# ---- helpers shared by op families --------------------------------------------

def whole_number(v: Any, what: str, minimum: int, span: Optional[Span], help: Optional[str] = None) -> int:
    """A count or size given as a number (`k=2`, `stride=2.0`): whole, at least `minimum`,
    and small enough to be an int64 size."""
    from ..values import MAX_STATIC_INT
    if isinstance(v, (str, bool)) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < minimum:
        raise error(f"`{what}` must be a whole number of at least {minimum}, not {v!r}", span, help)
    if abs(v) >= MAX_STATIC_INT:
        raise error(f"`{what}` is {v:g}, too large (at most {MAX_STATIC_INT - 1:,})", span)
    return int(v)

def require_axes(t: TensorType, axes: Sequence[str], what: str, span: Optional[Span]) -> None:
    for a in axes:
        if not t.has(a):
            from ..diagnostics import did_you_mean
            raise error(f"{what} has no axis `{a}`; its axes are {', '.join(t.names) or '(none)'}",
                        span, did_you_mean(a, t.names))


def macs_over(*types: TensorType) -> Size:
    """The multiply-accumulates of a contraction whose operands are `types`: one per point
    of the space spanned by all their axes (each distinct name counted once)."""
    sizes: dict[str, Size] = {}
    for t in types:
        for a in t.axes:
            sizes.setdefault(a.name, a.size)
    total = Size.of(1)
    for s in sizes.values():
        total = total * s
    return total


def positions(t: TensorType, axes: Sequence[str]) -> tuple[int, ...]:
    return tuple(t.position(a) for a in axes)


def same_dtype(ins: list[TensorType], op: str, span: Optional[Span]) -> str:
    dtypes = {t.dtype for t in ins}
    if len(dtypes) > 1:
        raise error(f"`{op}` mixes dtypes {', '.join(sorted(dtypes))}; cast one side with `cast(x, dtype)`", span)
    return ins[0].dtype


def numpy_dtype(dtype: str) -> np.dtype:
    from ..axes import DTYPES
    return np.dtype(DTYPES[dtype]) if dtype != "bf16" else np.dtype("float32")


def check_same_sizes(ins: Sequence[TensorType], span: Optional[Span]) -> None:
    """Axes of one name must have one size wherever they meet."""
    seen: dict[str, Axis] = {}
    for t in ins:
        for a in t.axes:
            other = seen.setdefault(a.name, a)
            if other.size != a.size:
                raise error(f"axis `{a.name}` is {a.size} in one operand but {other.size} in another", span)
