"""Elementwise ops: arithmetic, comparisons, logic, `where`, activations and `cast`.

They broadcast by axis name: the result carries the union of the operands' axes (first
operand's order first), and each operand is aligned to it before the positional kernel.
"""
from __future__ import annotations

import math
from typing import Optional

from ..axes import FLOAT_DTYPES, TensorType, join_axes
from ..diagnostics import error
from .registry import REGISTRY, OpDef, check_same_sizes, numpy_dtype, register, same_dtype


# How each op is written in .arch, for messages (`+` rather than `add`).
SPELLING = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "minimum": "min", "maximum": "max",
            "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "neg": "-"}


class _Elementwise(OpDef):
    arity = 2
    out_dtype: Optional[str] = None  # None: the operands' dtype
    needs_float = False
    needs_bool = False
    needs_number = False  # arithmetic: not on bool
    np_fn = ""
    onnx_op = ""

    def build(self, b, call):
        if call.over is not None:
            raise error(f"`{self.name}` takes no `over` clause; it acts on each element", call.over.span)
        if len(call.args) != self.arity:
            raise error(f"`{self.name}` takes {self.arity} argument{'s' if self.arity > 1 else ''}", call.span)
        return [b.elementwise(self.name, list(call.args), call.span)]

    def infer(self, ins, attrs, span):
        check_same_sizes(ins, span)
        shown = SPELLING.get(self.name, self.name)
        dtype = same_dtype(ins, shown, span)
        if self.needs_float and dtype not in FLOAT_DTYPES:
            raise error(f"`{shown}` needs a floating-point operand, not {dtype}", span,
                        "convert first with `cast(x, f32)`")
        if self.needs_bool and dtype != "bool":
            raise error(f"`{shown}` needs bool operands, not {dtype}", span)
        if self.needs_number and dtype == "bool":
            raise error(f"`{shown}` needs numbers, not bool", span,
                        "convert first with `cast(x, i64)`, or use `and`, `or` and `not` on bools")
        return [TensorType(self.out_dtype or dtype, join_axes(*ins))]

    def _aligned(self, em, node, ins):
        out = node.outputs[0].type.names
        return [em.align(x, v.type, out) for x, v in zip(ins, node.inputs)]

    def numpy(self, e, node, ins):
        return [e.call(self.np_fn, *self._aligned(e, node, ins))]

    def onnx(self, g, node, ins):
        return [g.node(self.onnx_op, self._aligned(g, node, ins))]


def _binary(name, np_fn, onnx_op, summary, out_dtype=None, needs_float=False, needs_bool=False,
            needs_number=False):
    cls = type(name, (_Elementwise,), dict(
        name=name, np_fn=np_fn, onnx_op=onnx_op, summary=summary, out_dtype=out_dtype, needs_float=needs_float,
        needs_bool=needs_bool, needs_number=needs_number, arity=2, __module__=__name__))
    register(cls)


for _n, _np, _ox, _s in [
    ("add", "np.add", "Add", "a + b"), ("sub", "np.subtract", "Sub", "a - b"),
    ("mul", "np.multiply", "Mul", "a * b"),
    ("minimum", "np.minimum", "Min", "elementwise min(a, b)"),
    ("maximum", "np.maximum", "Max", "elementwise max(a, b)"),
]:
    _binary(_n, _np, _ox, _s, needs_number=True)
# True division and powers are defined on floats: NumPy and ONNX disagree on integers.
_binary("div", "np.divide", "Div", "a / b (floating point)", needs_float=True)
_binary("pow", "np.power", "Pow", "a ** b (floating point)", needs_float=True)

for _n, _np, _ox, _s in [
    ("lt", "np.less", "Less", "a < b"), ("le", "np.less_equal", "LessOrEqual", "a <= b"),
    ("gt", "np.greater", "Greater", "a > b"), ("ge", "np.greater_equal", "GreaterOrEqual", "a >= b"),
    ("eq", "np.equal", "Equal", "a == b"),
]:
    _binary(_n, _np, _ox, _s, out_dtype="bool")

_binary("and", "np.logical_and", "And", "a and b (bool)", needs_bool=True)
_binary("or", "np.logical_or", "Or", "a or b (bool)", needs_bool=True)
REGISTRY["and"].surface = REGISTRY["or"].surface = False  # spelled as operators


@register
class NotEqual(_Elementwise):
    name, summary, out_dtype, np_fn = "ne", "a != b", "bool", "np.not_equal"

    def onnx(self, g, node, ins):
        return [g.node("Not", [g.node("Equal", self._aligned(g, node, ins))])]


@register
class Where(_Elementwise):
    name, arity, np_fn, onnx_op = "where", 3, "np.where", "Where"
    summary = "where(cond, a, b): a where cond is true, else b"

    def infer(self, ins, attrs, span):
        if ins[0].dtype != "bool":
            raise error(f"the condition of `where` must be bool, not {ins[0].dtype}", span)
        dtype = same_dtype(ins[1:], self.name, span)
        return [TensorType(dtype, join_axes(*ins))]


class _Unary(_Elementwise):
    arity = 1
    needs_float = True


def _unary(name, np_fn, onnx_op, summary, needs_float=True, needs_bool=False, needs_number=False):
    register(type(name, (_Unary,), dict(name=name, np_fn=np_fn, onnx_op=onnx_op, summary=summary,
                                         needs_float=needs_float, needs_bool=needs_bool,
                                         needs_number=needs_number, __module__=__name__)))


for _n, _np, _ox, _s in [
    ("exp", "np.exp", "Exp", "e ** x"), ("log", "np.log", "Log", "natural logarithm"),
    ("sqrt", "np.sqrt", "Sqrt", "square root"), ("tanh", "np.tanh", "Tanh", "hyperbolic tangent"),
    ("sigmoid", "sigmoid", "Sigmoid", "1 / (1 + exp(-x))"), ("sin", "np.sin", "Sin", "sine"),
    ("cos", "np.cos", "Cos", "cosine"), ("erf", "erf", "Erf", "the error function"),
    ("relu", "relu", "Relu", "max(x, 0)"), ("softplus", "softplus", "Softplus", "log(1 + exp(x))"),
    ("floor", "np.floor", "Floor", "round down to a whole number"),
    ("ceil", "np.ceil", "Ceil", "round up to a whole number"),
    ("round", "np.round", "Round", "round to the nearest whole number, halves to even (as ONNX Round)"),
]:
    _unary(_n, _np, _ox, _s)
_unary("neg", "np.negative", "Neg", "-x", needs_float=False, needs_number=True)
_unary("abs", "np.abs", "Abs", "|x|", needs_float=False, needs_number=True)
_unary("not", "np.logical_not", "Not", "logical not (bool)", needs_float=False, needs_bool=True)
REGISTRY["not"].surface = False


@register
class Rsqrt(_Unary):
    name, np_fn, summary = "rsqrt", "rsqrt", "1 / sqrt(x)"

    def onnx(self, g, node, ins):
        return [g.node("Reciprocal", [g.node("Sqrt", ins)])]


@register
class Silu(_Unary):
    name, np_fn, summary = "silu", "silu", "x * sigmoid(x) (swish)"

    def onnx(self, g, node, ins):
        return [g.node("Mul", [ins[0], g.node("Sigmoid", ins)])]


def _gelu_onnx(g, x: str, dtype: str, approximate: str) -> str:
    if g.opset >= 20:
        return g.node("Gelu", [x], approximate=approximate)
    c = lambda v: g.scalar(v, dtype)
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = g.node("Mul", [c(math.sqrt(2 / math.pi)),
                               g.node("Add", [x, g.node("Mul", [c(0.044715), g.node("Mul", [x, g.node("Mul", [x, x])])])])])
        return g.node("Mul", [g.node("Mul", [c(0.5), x]), g.node("Add", [c(1.0), g.node("Tanh", [inner])])])
    erf = g.node("Erf", [g.node("Div", [x, c(math.sqrt(2.0))])])
    return g.node("Mul", [g.node("Mul", [c(0.5), x]), g.node("Add", [c(1.0), erf])])


@register
class Gelu(_Unary):
    name, np_fn, summary = "gelu", "gelu", "GELU, exact: x * Phi(x) with the error function"

    def onnx(self, g, node, ins):
        return [_gelu_onnx(g, ins[0], node.inputs[0].type.dtype, "none")]


@register
class GeluTanh(_Unary):
    name, np_fn, summary = "gelu_tanh", "gelu_tanh", "GELU, tanh approximation (GPT-2's `gelu_new`)"

    def onnx(self, g, node, ins):
        return [_gelu_onnx(g, ins[0], node.inputs[0].type.dtype, "tanh")]


@register
class Cast(OpDef):
    name = "cast"
    summary = "cast(x, dtype): convert to another dtype"
    example = "y = cast(tokens, f32)"

    def build(self, b, call):
        from archlang.grammar import ast as A
        if len(call.args) != 2 or not isinstance(call.args[1], A.DTypeArg):
            raise error("`cast` takes a tensor and a dtype, as in `cast(x, f32)`", call.span)
        return b.emit("cast", [b.tensor(call.args[0])], {"dtype": call.args[1].dtype}, call.span)

    def infer(self, ins, attrs, span):
        return [ins[0].with_dtype(attrs["dtype"])]

    def numpy(self, e, node, ins):
        return [e.call("cast", ins[0], dtype=numpy_dtype(node.attrs["dtype"]).name)]

    def onnx(self, g, node, ins):
        return [g.node("Cast", ins, to=g.dtype(node.attrs["dtype"]))]
