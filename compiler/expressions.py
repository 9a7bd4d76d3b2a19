"""Expressions of the .arch language -> IR values: names, literals folded at compile time,
elementwise arithmetic with weak literals, contraction, indexing and op calls.

A mixin of the Builder (compiler/build.py).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import numpy as np

from archlang.grammar import ast

from . import ops
from .axes import DTYPES, INT_DTYPES, Axis, Size
from .conditions import check_scalar, fold_static
from .diagnostics import CompileError, Diagnostic, did_you_mean, error
from .dtypes import rounds_to_inf
from .ir import Value
from .values import MAX_STATIC_INT, Operand, Poison, Poisoned, Weak, snake


class Expressions:
    def expr(self, e: ast.Expr) -> Union[Operand, list[Operand]]:
        if isinstance(e, ast.Number):
            return Weak(e.value, e.span)
        if isinstance(e, ast.Var):
            return self.lookup(e.name, e.span)
        if isinstance(e, ast.AxisSize):
            return Weak(self.axis(e.axis, e.span).size, e.span)
        if isinstance(e, ast.Unary):
            if e.op == "neg":
                x = self.expr(e.operand)
                if isinstance(x, Weak) and x.static is not None:
                    return Weak(-x.static, e.span)
                return self.elementwise("neg", [e.operand], e.span)
            return self.elementwise("not", [e.operand], e.span)
        if isinstance(e, ast.Binary):
            if e.op == "contract":
                return self.contract(e, None)
            if e.op == "floordiv":  # a // b = floor(a / b), on floats (and folded on numbers)
                q = self.elementwise("div", [e.left, e.right], e.span)
                if isinstance(q, Weak) and q.static is not None:
                    left, right = self.expr(e.left), self.expr(e.right)
                    if right.static == 0:
                        raise error("division by zero in `//`", e.span)
                    return Weak(left.static // right.static, e.span)
                return self.emit("floor", [self.value(q, e.span)], {}, e.span)[0]
            op = {"min": "minimum", "max": "maximum"}.get(e.op, e.op)
            return self.elementwise(op, [e.left, e.right], e.op_span or e.span)
        if isinstance(e, ast.GroupedOver):
            if not (isinstance(e.expr, ast.Binary) and e.expr.op == "contract"):
                raise error("`over` in parentheses says which axes `@` contracts; there is no `@` here",
                            e.over.span, "for reductions write `sum(x over axis)`")
            if e.over.target is not None:
                raise error("`@` contracts axes; it takes no `->` mapping", e.over.span)
            return self.contract(e.expr, e.over.axes)
        if isinstance(e, ast.Index):
            table = self.value(self.lookup(e.target, e.span), e.span)
            if not table.type.axes:
                raise error(f"`{e.target}` has no axes to index", e.span)
            return ops.get("gather").build_gather(self, table, self.value(self.expr(e.index), e.span),
                                                  table.type.names[0], e.span)
        if isinstance(e, ast.Call):
            return self.call(e)
        raise error("this expression is not supported here", getattr(e, "span", None))

    def lookup(self, name: str, span: Optional[ast.Span]) -> Operand:
        if name in self.env.values:
            if name in self.env.bindings:
                self.env.bindings[name].read = True
            value = self.env.values[name]
            if isinstance(value, Poison):
                raise Poisoned()
            return value
        if name in self.consts:
            return Weak(self.consts[name], span)
        if name in self.env.axes:
            raise error(f"`{name}` is an axis, not a value", span, f"write `|{name}|` for its size")
        raise error(f"unknown name `{name}`", span, self.untaken_help(name)
                    or did_you_mean(name, list(self.env.values) + list(self.consts)))

    def value(self, x: Operand, span: Optional[ast.Span], dtype: Optional[str] = None) -> Value:
        if isinstance(x, list):
            raise error(f"this gives {len(x)} values where one is expected", span)
        return self.as_value(x, dtype)

    def as_value(self, x: Operand, dtype: Optional[str]) -> Value:
        if isinstance(x, Value):
            return x
        dtype = check_scalar(x, dtype)
        if dtype is None:
            dtype = "i64" if isinstance(x.static, int) and not isinstance(x.value, Size) else self.float_dtype
        if isinstance(x.value, Size) and x.static is None:
            return self.emit("axis_size", [], {"size": x.value, "dtype": dtype}, x.span)[0]
        value = x.static
        if dtype in INT_DTYPES or dtype == "bool":
            if isinstance(value, float) and not value.is_integer():
                raise error(f"{value!r} meets {'an' if dtype[0] in 'iu' else 'a'} {dtype} tensor and would be "
                            "truncated", x.span,
                            "convert the tensor first with `cast(x, f32)`")
            info = np.iinfo(DTYPES[dtype]) if dtype != "bool" else None
            if info is not None and not info.min <= value <= info.max:
                raise error(f"{value!r} does not fit in {dtype}", x.span)
        elif rounds_to_inf(value, dtype):
            self.warn(f"{value:g} is past the largest {dtype} and becomes {'-' if value < 0 else ''}inf", x.span,
                      "infinity times 0 is NaN: to mask, select with `where`, or use a number the dtype holds")
        return self.emit("const", [], {"value": value, "dtype": dtype}, x.span)[0]

    def tensor(self, arg: ast.Arg) -> Value:
        """A tensor argument of an op (a literal becomes an f32 scalar)."""
        if isinstance(arg, (ast.Keyword, ast.AxisMap, ast.DTypeArg, ast.StringArg)):
            raise error("a tensor is expected here", arg.span)
        return self.value(self.expr(arg), arg.span)

    def static(self, e: ast.Expr) -> Any:
        """A compile-time argument: a number (or constant), a string, or a tuple of numbers."""
        if isinstance(e, ast.StringArg):
            return e.value
        if isinstance(e, ast.DTypeArg):
            return e.dtype
        if isinstance(e, ast.Tuple):
            return tuple(self.static(i) for i in e.items)
        x = self.expr(e)
        if not isinstance(x, Weak) or x.static is None:
            raise error("this must be known at compile time (a number or a constant)", e.span)
        # Integers become sizes and indices, so they stay well inside int64. A float stays a
        # float (`value=-1e30` pads with a large negative number); an op that takes a whole
        # float as a count bounds it itself (`whole_number` in compiler/ops/registry.py).
        if isinstance(x.static, int) and abs(x.static) >= MAX_STATIC_INT:
            raise error(f"{x.static} is too large here (at most {MAX_STATIC_INT - 1:,})", e.span)
        return x.static

    def elementwise(self, op: str, args: list[ast.Expr], span: Optional[ast.Span]) -> Operand:
        xs = [self.expr(a) for a in args]
        for x, a in zip(xs, args):
            if isinstance(x, list):
                raise error(f"this gives {len(x)} values where one is expected", a.span)
        if all(isinstance(x, Weak) and x.static is not None for x in xs):
            folded = fold_static(op, [x.static for x in xs], span)  # true/false, and no words as numbers
            if folded is not None:
                return folded
        if all(isinstance(x, Weak) and x.static is not None for x in xs) and op in _FOLD:
            return Weak(_fold(op, [x.static for x in xs]), span)
        if all(isinstance(x, Weak) for x in xs) and op in ("add", "sub", "mul") and all(
                isinstance(x.value, Size) or (isinstance(x.value, int) and not isinstance(x.value, bool)) for x in xs):
            a, b = (Size.of(x.value) for x in xs)  # `|seq| - 1` is still a size, not yet a tensor
            return Weak(a + b if op == "add" else a - b if op == "sub" else a * b, span)
        typed = [x for x in (xs[1:] if op == "where" else xs) if isinstance(x, Value)]
        dtype = typed[0].type.dtype if typed else self.float_dtype
        values = []
        for i, x in enumerate(xs):
            values.append(self.as_value(x, "bool" if op == "where" and i == 0 and isinstance(x, Weak) else dtype))
        return self.emit(op, values, {}, span)[0]

    def contract(self, e: ast.Binary, over: Optional[tuple[str, ...]]) -> Value:
        a = self.value(self.expr(e.left), e.left.span)
        b = self.value(self.expr(e.right), e.right.span)
        if over is None:
            shared = tuple(n for n in a.type.names if b.type.has(n))
            if not shared:
                raise error(f"`@` finds no shared axis to contract: {a.type} and {b.type}", e.span)
            if not (self._is_param(a) or self._is_param(b)):
                raise error("say which axes `@` contracts, as in `(a @ b over axis)`", e.span,
                            f"both sides are activations; they share {', '.join(shared)}")
            over = shared
        return self.emit("contract", [a, b], {"axes": tuple(over)}, e.span)[0]

    @staticmethod
    def _is_param(v: Value) -> bool:
        return v.producer is not None and v.producer.op == "param"

    def _check_axis_sizes(self, inputs: list[Value], span: Optional[ast.Span]) -> None:
        """One name, one size: say which operands disagree and where the axis was declared."""
        seen: dict[str, tuple[Axis, Value]] = {}
        for v in inputs:
            for a in v.type.axes:
                if a.name not in seen:
                    seen[a.name] = (a, v)
                    continue
                first, fv = seen[a.name]
                if first.size != a.size:
                    def who(x: Value) -> str:
                        return f"`{x.hint.split('.')[-1]}`" if x.hint and not x.hint.startswith("\0") else "another operand"
                    diag = Diagnostic(f"`{a.name}` is {a.size} in {who(v)} but {first.size} in {who(fv)}", span)
                    where = self.env.axis_spans.get(a.name) if self.env else None
                    if where is not None:
                        diag.note(f"`{a.name}` is declared here as {self.env.axes[a.name].size}", where)
                    raise CompileError(diag)

    # calls of blocks: compiler/blocks.py
    def call(self, call: ast.Call) -> Union[Operand, list[Operand]]:
        if call.name in self.program.blocks:
            return self.call_block(call, call.instance or snake(call.name))
        if call.name in ("min", "max") and call.over is None:
            return self.elementwise({"min": "minimum", "max": "maximum"}[call.name], list(call.args), call.span)
        if call.name in ops.REGISTRY and ops.REGISTRY[call.name].surface:
            if call.binding:
                raise error(f"`{call.name}` is an op; `[...]` binds the axes of a block", call.span)
            if call.instance:
                raise error(f"`{call.name}` is an op and has no parameters to name with `as`", call.span)
            out = ops.REGISTRY[call.name].build(self, call)
            return out[0] if len(out) == 1 else list(out)
        names = list(self.program.blocks) + [n for n, o in ops.REGISTRY.items() if o.surface]
        raise error(f"unknown op or block `{call.name}`", call.name_span or call.span, did_you_mean(call.name, names))


_FOLD = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b if b != 0 else math.copysign(math.inf, a) if a else math.nan,
    "pow": lambda a, b: float(a) ** b, "neg": lambda a: -a,
    "sqrt": lambda a: math.sqrt(a) if a >= 0 else math.nan,
    "rsqrt": lambda a: 1 / math.sqrt(a) if a > 0 else math.inf if a == 0 else math.nan,
    "exp": lambda a: math.exp(min(a, 700)), "log": lambda a: math.log(a) if a > 0 else -math.inf if a == 0 else math.nan,
    "minimum": min, "maximum": max,
}


def _fold(op: str, args: list) -> Union[int, float]:
    """Arithmetic on literals at compile time, with IEEE results where Python would raise."""
    try:
        return _FOLD[op](*args)
    except ZeroDivisionError:
        return math.inf
    except OverflowError:
        return math.inf
    except (ValueError, TypeError):
        return math.nan
