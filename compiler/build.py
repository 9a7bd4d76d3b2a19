"""AST -> typed IR.

The builder evaluates the model's body as a dataflow program: names bind IR values,
blocks are instantiated at each call (with their axis parameters bound to the caller's
wires and their parameters named by instance path), repeats unroll with their copies
recorded in each node's scope, and every op's type rule runs as its node is created.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from archlang.grammar import ast

from . import ops
from .axes import DTYPES, INT_DTYPES, Axis, Size, TensorType
from .diagnostics import CompileError, Diagnostic, did_you_mean, error, plural
from .ir import Graph, ParamSpec, Scope, Value
from .program import Program

MAX_CALL_DEPTH = 64
DEFAULT_MAX_PARAMS = 2 ** 32  # elements: 16 GiB of f32, the most a 24 GB machine can hold with room to run
INITIALIZERS = {"zeros": 0, "ones": 0, "normal": (1, 2), "uniform": (0, 2), "xavier": 0, "kaiming": 0,
                "constant": 1}


@dataclass
class Weak:
    """A scalar without a dtype yet (a literal, a constant, `|axis|`): it takes its partner's."""
    value: Union[float, int, Size]
    span: Optional[ast.Span]

    @property
    def static(self) -> Optional[float]:
        if isinstance(self.value, Size):
            v = self.value.value
            return None if v is None else v
        return self.value


class Poison:
    """The value of a statement that failed. Using it fails silently, so one mistake gives one
    error and the builder can go on to report the independent ones."""


class Poisoned(CompileError):
    """Raised where a poisoned value is used: nothing new to report."""

    def __init__(self) -> None:
        super().__init__()


Operand = Union[Value, Weak, Poison]
MAX_ERRORS = 20


@dataclass
class Binding:
    span: Optional[ast.Span]
    kind: str  # "value" | "parameter" | "argument" | "input"
    read: bool = False


@dataclass
class Env:
    """One function's names: its axes (with where each was declared) and its values."""
    axes: dict[str, Axis]
    axis_spans: dict[str, Optional[ast.Span]]
    values: dict[str, Operand]
    function: ast.Function
    bindings: dict[str, Binding] = field(default_factory=dict)


def format_layout(layout: tuple[tuple[str, ...], ...]) -> str:
    items = ["1" if not g else g[0] if len(g) == 1 else "(" + ", ".join(g) + ")" for g in layout]
    return "[" + ", ".join(items) + "]"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Builder:
    def __init__(self, program: Program, overrides: Optional[dict[str, str]] = None,
                 max_params: int = DEFAULT_MAX_PARAMS):
        self.program = program
        self.max_params = max_params
        self.n_params = 0
        self.overrides = dict(overrides or {})
        self.graph = Graph(program.model.name if program.model else "model")
        self.scope = Scope()
        self.consts: dict[str, Union[int, float]] = {}
        self.global_axes: dict[str, Axis] = {}
        self.global_axis_spans: dict[str, Optional[ast.Span]] = {}
        self.env: Optional[Env] = None
        self.call_stack: list[str] = []
        self.sharing_params = False
        self.param_values: dict[str, Value] = {}
        self.param_calls: dict[str, ast.Span] = {}  # parameter -> the call that created it
        self.call_spans: list[ast.Span] = []
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self._reported: set[tuple] = set()

    # ---- reporting ------------------------------------------------------------

    def record(self, e: CompileError) -> None:
        """Keep the errors of a failed statement (each once) and go on, up to MAX_ERRORS."""
        for d in e.diagnostics:
            key = (d.message, d.span)
            if key in self._reported:
                continue
            self._reported.add(key)
            seen = [d.span] + [sp for _, sp in d.notes]
            for name, span in list(zip(self.call_stack, self.call_spans))[::-1][:3]:
                if span not in seen:
                    d.note(f"in block `{name}`, called here", span)
            self.errors.append(d)
        if len(self.errors) >= MAX_ERRORS:
            raise CompileError(*self.errors, Diagnostic(f"stopping after {MAX_ERRORS} errors", None))

    def warn(self, message: str, span: Optional[ast.Span], help: Optional[str] = None) -> None:
        key = (message, span)
        if key not in self._reported:
            self._reported.add(key)
            self.warnings.append(Diagnostic(message, span, severity="warning", help=help))

    def bind(self, name: str, value: Operand, span: Optional[ast.Span], kind: str) -> None:
        """Bind a name, warning about the value it replaces if that was never used."""
        old = self.env.bindings.get(name)
        if old is not None and not old.read:
            self._warn_unused(name, old)
        if name in self.consts and name not in self.env.values:
            self.warn(f"`{name}` shadows the constant `{name}`", span,
                      "rename one of them, or the constant is out of reach here")
        self.env.values[name] = value
        self.env.bindings[name] = Binding(span, kind)

    def _warn_unused(self, name: str, b: Binding) -> None:
        if name.startswith("_") or name.startswith("\0"):
            return
        what = {"value": "value", "parameter": "parameter", "argument": "argument", "input": "input"}[b.kind]
        self.warn(f"{what} `{name}` is never used", b.span,
                  f"remove it, or name it `_{name}` to say it is unused on purpose" if b.kind == "value" else None)

    def _warn_unread(self) -> None:
        for name, b in self.env.bindings.items():
            if not b.read:
                self._warn_unused(name, b)

    # ---- entry point ----------------------------------------------------------

    def build(self) -> Graph:
        model = self.program.model
        if model is None:
            raise error("no `model` in this file; there is nothing to compile", None,
                        "add `model Name(x: f32[...]) -> f32[...] { ... }`")
        self.env = Env(self.global_axes, self.global_axis_spans, {}, model)
        self._global_declarations()
        unused = set(self.overrides) - set(self.consts) - set(self.global_axes)
        if unused:
            name = sorted(unused)[0]
            raise error(f"`--set {name}={self.overrides[name]}`: {Path(self.program.file).name} declares no axis "
                        f"or constant `{name}`", None,
                        did_you_mean(name, list(self.consts) + list(self.global_axes)))
        self.env = Env(dict(self.global_axes), dict(self.global_axis_spans), {}, model)
        for arg in model.args:
            t = self.resolve_type(arg.type, allow_rest=False)
            v = self.graph.add_input(arg.name, t)
            for i, a in enumerate(t.axes):
                if not a.size.is_static and len(a.size.symbols) == 1 and a.size == Size.of(next(iter(a.size.symbols))):
                    self.graph.symbols.setdefault(next(iter(a.size.symbols)), (arg.name, i))
            self.bind(arg.name, v, arg.span, "input")
        results = self.run_body(model)
        if self.errors:  # warnings wait: after an error, "never used" is often just recovery's doing
            raise CompileError(*self.errors)
        if len(results) != len(model.results):
            raise CompileError(Diagnostic(f"`{model.name}` returns {plural(len(results), 'value')} but declares "
                                          f"{plural(len(model.results), 'result')}", self._return_span(model))
                               .note("declared here", model.span))
        taken = {n for n, _ in self.graph.inputs} | set(self.graph.params)
        for decl in model.results:
            if decl.name in taken:
                raise error(f"result `{decl.name}` has the name of an input or parameter; outputs need their own "
                            "names in ONNX", decl.span)
        for decl, value, span in zip(model.results, results, self._return_spans(model)):
            want = self.resolve_type(decl.type, allow_rest=False)
            v = self.as_value(value, want.dtype)
            self.check_type(v, want, f"result `{decl.name}` of `{model.name}`", span, decl.span)
            if v.type.names != want.names:
                v = self.emit("transpose", [v], {"order": want.names}, span)[0]
            self.graph.outputs.append((decl.name, v))
        self._check_symbols_bound()
        self.graph.warnings = sorted(self.warnings, key=lambda d: (d.span.file, d.span.line, d.span.column)
                                     if d.span else ("", 0, 0))
        return self.graph

    def _check_symbols_bound(self) -> None:
        for n in self.graph.nodes:
            for v in n.outputs:
                for a in v.type.axes:
                    missing = a.size.symbols - set(self.graph.symbols)
                    if missing:
                        raise error(f"the size of axis `{a.name}` depends on `{sorted(missing)[0]}`, "
                                    f"which no model input carries", n.span,
                                    "symbolic axes are bound by the model's inputs; give this one a size")

    # ---- declarations -------------------------------------------------------

    def _global_declarations(self) -> None:
        """Axes and constants in source order: each may use those declared before it."""
        for d in self.program.decls:
            if isinstance(d, ast.AxisDef):
                self.declare_axis(d, self.env, override=self.overrides.get(d.name))
                continue
            if d.name in self.overrides:
                self.consts[d.name] = self._parse_override(d.name, self.overrides[d.name], d.span)
                continue
            w = self.expr(d.value)
            if not isinstance(w, Weak) or w.static is None:
                raise error(f"constant `{d.name}` must be a number", d.value.span)
            self.consts[d.name] = w.static

    def _parse_override(self, name: str, text: str, span) -> Union[int, float]:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise error(f"`--set {name}={text}`: the value must be a number", None) from None

    def declare_axis(self, d: ast.AxisDef, env: Env, override: Optional[str] = None) -> None:
        # A block may shadow a global axis; one scope may not declare a name twice.
        first = env.axis_spans.get(d.name)
        if d.name in env.axes and (env.axes is self.global_axes or first is not self.global_axis_spans.get(d.name)):
            raise CompileError(Diagnostic(f"axis `{d.name}` is declared twice", d.span)
                               .note("first declared here", first))
        if override is not None:
            value = self._parse_override(d.name, override, d.span)
            if not isinstance(value, int) or value <= 0:
                raise error(f"`--set {d.name}={override}`: an axis size must be a positive integer", None)
            size = Size.of(value)
        elif d.kind == "symbolic":
            size = Size.of(d.name)
        elif d.kind == "like":
            size = self.axis(d.like, d.span, env).size
        else:
            size = self.size_expr(d.size, env, d.name)
            if size.is_static and (size.value is None or size.value <= 0):
                raise error(f"axis `{d.name}` would have size {size}; sizes must be positive integers", d.span)
        env.axes[d.name] = Axis(d.name, size)
        env.axis_spans[d.name] = d.span

    def size_expr(self, e: ast.SizeExpr, env: Env, axis: str = "") -> Size:
        if isinstance(e, ast.SizeInt):
            return Size.of(e.value)
        if isinstance(e, ast.SizeName):
            if e.name in env.axes:
                return env.axes[e.name].size
            local = env.values.get(e.name) if env.values else None
            if isinstance(local, Weak) and isinstance(local.static, int) and not isinstance(local.static, bool):
                return Size.of(local.static)  # a block's constant parameter
            if e.name in self.consts and isinstance(self.consts[e.name], int):
                return Size.of(self.consts[e.name])
            if e.name in self.consts:
                raise error(f"constant `{e.name}` is {self.consts[e.name]!r}; an axis size needs a whole number",
                            e.span)
            raise error(f"unknown axis `{e.name}` in a size", e.span,
                        did_you_mean(e.name, list(env.axes) + list(self.consts)))
        left, right = self.size_expr(e.left, env, axis), self.size_expr(e.right, env, axis)
        if e.op == "+":
            return left + right
        if e.op == "-":
            return left - right
        if e.op == "*":
            return left * right
        if e.op == "//" and not (left.is_static and right.is_static):
            raise error(f"`//` rounds down, which needs static sizes; {left} // {right} is symbolic", e.span)
        result = left.divide(right) if e.op == "/" else left.floordiv(right)
        if result is None:
            raise error(f"{'axis `' + axis + '`: ' if axis else ''}{left} / {right} is not a whole number", e.span,
                        "use `//` to round down" if e.op == "/" else None)
        return result

    def axis(self, name: str, span: Optional[ast.Span], env: Optional[Env] = None) -> Axis:
        env = env or self.env
        if name not in env.axes:
            hint = did_you_mean(name, env.axes)
            if name in env.values:
                hint = f"`{name}` is a value, not an axis"
            raise error(f"unknown axis `{name}`", span, hint)
        return env.axes[name]

    def axis_span(self, name: str) -> Optional[ast.Span]:
        return self.env.axis_spans.get(name)

    def resolve_type(self, t: ast.TensorType, allow_rest: bool, env: Optional[Env] = None) -> TensorType:
        axes: list[Axis] = []
        for a in t.axes:
            if a.name == "...":
                if not allow_rest:
                    raise error("`...` is only allowed in block signatures; a model's types name every axis",
                                a.span)
                continue
            ax = self.axis(a.name, a.span, env)
            if ax in axes:
                raise error(f"axis `{a.name}` appears twice in one type", a.span,
                            "two wires of one size need two names; declare one with `axis other ~ "
                            f"{a.name}`")
            axes.append(ax)
        return TensorType(t.dtype, tuple(axes))

    # ---- statements -----------------------------------------------------------

    def run_body(self, fn: ast.Function) -> list[Operand]:
        """Run the statements; a failing one is recorded and its names poisoned."""
        for stmt in fn.body:
            if isinstance(stmt, ast.Return):
                try:
                    results = [self.expr(v) for v in stmt.values]
                except CompileError as e:
                    self.record(e)
                    results = [Poison() for _ in fn.results]
                self._warn_unread()
                return results
            try:
                self.statement(stmt)
            except CompileError as e:
                self.record(e)
                for name in _defined_names(stmt):
                    self.env.values[name] = Poison()
                    self.env.bindings[name] = Binding(None, "value", read=True)
        raise error(f"`{fn.name}` has no `return`", fn.span)

    def _return_spans(self, fn: ast.Function) -> list[ast.Span]:
        for stmt in fn.body:
            if isinstance(stmt, ast.Return):
                return [v.span for v in stmt.values]
        return []

    def _return_span(self, fn: ast.Function) -> ast.Span:
        for stmt in fn.body:
            if isinstance(stmt, ast.Return):
                return stmt.span
        return fn.span

    def statement(self, stmt: ast.Stmt) -> None:
        if isinstance(stmt, ast.ParamStmt):
            self.bind(stmt.name, self.param(stmt), stmt.span, "parameter")
        elif isinstance(stmt, ast.AxisDecl):
            for d in stmt.axes:
                if d.name in self.env.values:
                    raise error(f"`{d.name}` is already a value here", d.span)
                self.declare_axis(d, self.env)
        elif isinstance(stmt, ast.Assign):
            if isinstance(stmt.value, ast.Repeat):
                results = self.repeat(stmt.value)
            else:
                results = self.expr(stmt.value)
            results = results if isinstance(results, list) else [results]
            if len(results) != len(stmt.targets):
                raise error(f"{len(stmt.targets)} name(s) on the left but {len(results)} value(s) on the right",
                            stmt.span)
            for name, v in zip(stmt.targets, results):
                if name in self.env.axes:
                    raise error(f"`{name}` is an axis; a value needs another name", stmt.span)
                if isinstance(v, Value) and not v.hint:
                    v.hint = name
                self.bind(name, v, stmt.span, "value")

    def param(self, stmt: ast.ParamStmt) -> Value:
        full = ".".join(self.scope.path + (stmt.name,))
        axes = []
        for name in stmt.axes:
            ax = self.axis(name, stmt.span)
            if ax in axes:
                raise error(f"axis `{name}` appears twice in parameter `{stmt.name}`", stmt.span,
                            f"declare a second wire with `axis other ~ {name}`")
            axes.append(ax)
        t = TensorType(stmt.dtype or "f32", tuple(axes))
        for ax in axes:
            if not ax.size.is_static:
                raise error(f"parameter `{stmt.name}` has axis `{ax.name}` of size {ax.size}; parameters need "
                            "fixed sizes", stmt.span, "give the axis a size, or use `--set` to fix it")
        if full in self.graph.params:
            if self.sharing_params and full in self.param_values:
                return self.param_values[full]
            first_call = self.param_calls.get(full)
            here = self.call_spans[-1] if self.call_spans else stmt.span
            instance = ".".join(self.scope.path) or "the model"
            if first_call is not None and self.call_spans:
                diag = Diagnostic(f"a second call is also named `{instance}`, so parameter `{full}` would be "
                                  "declared twice", here,
                                  help=f"name each call with `as`, as in `... as {self.scope.path[-1]}_2`")
                diag.note(f"the first call named `{instance}` is here", first_call)
            else:
                diag = Diagnostic(f"parameter `{full}` is declared twice", stmt.span)
                diag.note("first declared here", self.graph.params[full].span)
            raise CompileError(diag)
        count = math.prod(ax.size.value for ax in axes)
        self.n_params += count
        if self.n_params > self.max_params:
            raise error(f"parameters would reach {self.n_params:,} elements, over the budget of {self.max_params:,}",
                        stmt.span, "raise it with `--max-params N` if the machine can hold them")
        init = self.param_init(stmt, t)
        source = ".".join(self.scope.path + (stmt.source.name,)) if stmt.source else full
        if stmt.source and "{i}" in stmt.source.name:
            source = stmt.source.name.replace("{i}", str(self.scope.repeat[-1][1] if self.scope.repeat else 0))
        layout = self.param_layout(stmt, t)
        self.graph.params[full] = ParamSpec(full, t, init, stmt.span, source, layout)
        if self.call_spans:
            self.param_calls[full] = self.call_spans[-1]
        v = self.emit("param", [], {"name": full, "type": t}, stmt.span)[0]
        v.hint = full
        self.param_values[full] = v
        return v

    def param_init(self, stmt: ast.ParamStmt, t: TensorType) -> tuple[str, tuple, dict]:
        if stmt.init is None:
            return ("normal", (0.02,), {})
        init = stmt.init
        if init.name not in INITIALIZERS:
            raise error(f"unknown initializer `{init.name}`", init.span, did_you_mean(init.name, INITIALIZERS))
        args = []
        for a in init.args:
            w = self.expr(a) if not isinstance(a, (ast.Keyword, ast.AxisMap, ast.DTypeArg, ast.StringArg)) else None
            if not isinstance(w, Weak) or w.static is None:
                raise error(f"arguments of `{init.name}` must be numbers", getattr(a, "span", init.span))
            args.append(float(w.static))
        arity = INITIALIZERS[init.name]
        lo, hi = arity if isinstance(arity, tuple) else (arity, arity)
        if not lo <= len(args) <= hi:
            raise error(f"`{init.name}` takes {lo if lo == hi else f'{lo} to {hi}'} argument{'' if hi == 1 else 's'}",
                        init.span)
        kwargs: dict[str, Any] = {}
        if init.over is not None:
            if init.name not in ("xavier", "kaiming", "uniform"):
                raise error("`over` names fan-in axes, which only `uniform`, `xavier` and `kaiming` use",
                            init.over.span)
            sizes = [self.axis(a, init.over.span).size for a in init.over.axes]
            if not all(sz.is_static for sz in sizes):
                raise error("fan-in axes need fixed sizes", init.over.span)
            kwargs["fan_in"] = math.prod(sz.value for sz in sizes)
        return (init.name, tuple(args), kwargs)

    def param_layout(self, stmt: ast.ParamStmt, t: TensorType) -> Optional[tuple[tuple[str, ...], ...]]:
        if stmt.source is None or stmt.source.layout is None:
            return None
        flat = [a for group in stmt.source.layout for a in group]
        if sorted(flat) != sorted(t.names):
            raise error(f"the stored layout {format_layout(stmt.source.layout)} "
                        f"must name each axis of `{stmt.name}` ({', '.join(t.names)}) once", stmt.source.span)
        return stmt.source.layout

    # ---- expressions -------------------------------------------------------------

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
        raise error(f"unknown name `{name}`", span, did_you_mean(name, list(self.env.values) + list(self.consts)))

    def value(self, x: Operand, span: Optional[ast.Span], dtype: Optional[str] = None) -> Value:
        if isinstance(x, list):
            raise error(f"this gives {len(x)} values where one is expected", span)
        return self.as_value(x, dtype)

    def as_value(self, x: Operand, dtype: Optional[str]) -> Value:
        if isinstance(x, Value):
            return x
        if dtype is None:
            dtype = "i64" if isinstance(x.static, int) and not isinstance(x.value, Size) else "f32"
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
        x = self.expr(e)
        if not isinstance(x, Weak) or x.static is None:
            raise error("this must be known at compile time (a number or a constant)", e.span)
        return x.static

    def elementwise(self, op: str, args: list[ast.Expr], span: Optional[ast.Span]) -> Operand:
        xs = [self.expr(a) for a in args]
        for x, a in zip(xs, args):
            if isinstance(x, list):
                raise error(f"this gives {len(x)} values where one is expected", a.span)
        if all(isinstance(x, Weak) and x.static is not None for x in xs) and op in _FOLD:
            return Weak(_FOLD[op](*[x.static for x in xs]), span)
        if all(isinstance(x, Weak) for x in xs) and op in ("add", "sub", "mul") and all(
                isinstance(x.value, Size) or (isinstance(x.value, int) and not isinstance(x.value, bool)) for x in xs):
            a, b = (Size.of(x.value) for x in xs)  # `|seq| - 1` is still a size, not yet a tensor
            return Weak(a + b if op == "add" else a - b if op == "sub" else a * b, span)
        typed = [x for x in (xs[1:] if op == "where" else xs) if isinstance(x, Value)]
        dtype = typed[0].type.dtype if typed else "f32"
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

    def emit(self, op: str, inputs: list[Value], attrs: dict[str, Any], span: Optional[ast.Span]) -> list[Value]:
        self._check_axis_sizes(inputs, span)
        opdef = ops.get(op)
        out_types = opdef.infer([v.type for v in inputs], attrs, span)
        for t in out_types:
            sizes = [a.size.value for a in t.axes if a.size.is_static]
            if sizes and math.prod(sizes) > self.max_params:
                raise error(f"this value would hold {math.prod(sizes):,} elements ({t.describe()}), over the "
                            f"budget of {self.max_params:,}", span, "raise it with `--max-params N`")
        node = self.graph.add_node(op, inputs, attrs, out_types, span, self.scope)
        return node.outputs

    # ---- calls, blocks and repeats ---------------------------------------------

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

    def call_block(self, call: ast.Call, instance: str) -> Union[Operand, list[Operand]]:
        fn = self.program.blocks[call.name]
        if call.name in self.call_stack:
            raise error(f"block `{call.name}` calls itself (through {' -> '.join(self.call_stack + [call.name])}); "
                        "blocks may not be recursive", call.span, "use `repeat N` for repetition")
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            raise error(f"blocks nest deeper than {MAX_CALL_DEPTH} calls", call.span)
        if call.over is not None:
            raise error(f"block `{call.name}` takes no `over` clause", call.over.span)
        args = [a for a in call.args]
        if any(isinstance(a, ast.Keyword) for a in args):
            raise error(f"block `{call.name}` takes its arguments by position", call.span)
        if len(args) != len(fn.args):
            raise CompileError(Diagnostic(f"block `{call.name}` takes {plural(len(fn.args), 'argument')} but is given "
                                          f"{len(args)}", call.span).note("defined here", fn.span))
        inner_axes, renames = self._bind_axes(fn, call)
        consts = self._bind_consts(fn, call)
        arg_values = [self.value(self.expr(a), a.span) for a in args]
        outer_env, outer_scope = self.env, self.scope
        self.env = Env(dict(self.global_axes), dict(self.global_axis_spans), dict(consts), fn)
        for name, ax in inner_axes.items():
            self.env.axes[name] = ax
            self.env.axis_spans[name] = fn.span
        self.scope = self.scope.child(instance, call.name)
        self.call_stack.append(call.name)
        self.call_spans.append(call.span)
        try:
            for decl, v, a in zip(fn.args, arg_values, args):
                v = self._rename(v, renames, a.span)
                want = self.resolve_type(decl.type, allow_rest=True)
                if isinstance(v, Value) and not v.hint:
                    v.hint = decl.name
                self.check_type(v, want, f"argument `{decl.name}` of `{call.name}`", a.span, decl.span,
                                rest=any(x.name == "..." for x in decl.type.axes),
                                outer={inner: o for o, inner in renames.items()})
                self.bind(decl.name, v, decl.span, "argument")
            n_errors = len(self.errors)
            results = self.run_body(fn)
            if len(self.errors) > n_errors or any(isinstance(r, Poison) for r in results):
                return [Poison() for _ in fn.results] if len(fn.results) > 1 else Poison()
            if len(results) != len(fn.results):
                raise CompileError(Diagnostic(f"`{fn.name}` returns {plural(len(results), 'value')} but declares "
                                              f"{plural(len(fn.results), 'result')}", self._return_span(fn))
                                   .note("declared here", fn.span))
            outs = []
            for decl, r, span in zip(fn.results, results, self._return_spans(fn)):
                want = self.resolve_type(decl.type, allow_rest=True)
                r = self.as_value(r, want.dtype)
                self.check_type(r, want, f"the result of `{fn.name}`", span, decl.span,
                                rest=any(x.name == "..." for x in decl.type.axes),
                                outer={inner: o for o, inner in renames.items()})
                outs.append(r)
        finally:
            self.call_stack.pop()
            self.call_spans.pop()
            self.env, self.scope = outer_env, outer_scope
        back = {inner: outer for outer, inner in renames.items()}
        outs = [self._rename(v, back, call.span) for v in outs]
        return outs[0] if len(outs) == 1 else outs

    def _bind_consts(self, fn: ast.Function, call: ast.Call) -> dict[str, Weak]:
        """The block's constant parameters: keyword bindings, else their defaults."""
        given = {k.name: k for k in call.binding if isinstance(k, ast.Keyword)}
        declared = dict(fn.const_params)
        for name, k in given.items():
            if name not in declared:
                raise error(f"block `{fn.name}` has no constant parameter `{name}`", k.span,
                            did_you_mean(name, declared))
        out: dict[str, Weak] = {}
        for name, default in fn.const_params:
            w = self.expr(given[name].value) if name in given else self._in_globals(default)
            if not isinstance(w, Weak) or w.static is None:
                raise error(f"constant parameter `{name}` of `{fn.name}` must be a number",
                            (given[name].value if name in given else default).span)
            out[name] = w
        return out

    def _in_globals(self, e: ast.Expr):
        saved = self.env
        self.env = Env(dict(self.global_axes), dict(self.global_axis_spans), {}, saved.function)
        try:
            return self.expr(e)
        finally:
            self.env = saved

    def _bind_axes(self, fn: ast.Function, call: ast.Call) -> tuple[dict[str, Axis], dict[str, str]]:
        """The block's axis parameters as inner axes, and the caller-wire -> parameter renames."""
        binding = [b for b in call.binding if not isinstance(b, ast.Keyword)]
        if binding and len(binding) != len(fn.axis_params):
            raise error(f"block `{fn.name}` takes {plural(len(fn.axis_params), 'axis parameter')} "
                        f"[{', '.join(fn.axis_params)}] but is given {len(binding)}", call.span)
        inner: dict[str, Axis] = {}
        renames: dict[str, str] = {}
        for i, p in enumerate(fn.axis_params):
            if binding:
                b = binding[i]
                if not isinstance(b, ast.Var):
                    raise error(f"axis parameter `{p}` of `{fn.name}` must be bound to an axis name", b.span)
                outer = self.axis(b.name, b.span)
            elif p in self.env.axes:
                outer = self.env.axes[p]
            else:
                raise error(f"block `{fn.name}` needs its axis parameter `{p}`: write `{fn.name}[...](...)`",
                            call.span)
            if outer.name in renames:
                raise error(f"axis `{outer.name}` is bound to two parameters of `{fn.name}`", call.span,
                            f"two wires of one size need two names; declare one with `axis other ~ {outer.name}`")
            inner[p] = Axis(p, outer.size)
            if outer.name != p:
                renames[outer.name] = p
        return inner, renames

    def _rename(self, v: Value, renames: dict[str, str], span) -> Value:
        mapping = tuple((a, renames[a]) for a in v.type.names if a in renames)
        if not mapping:
            return v
        clash = [new for _, new in mapping if v.type.has(new) and new not in renames]
        if clash:
            raise error(f"renaming would give two axes named `{clash[0]}`", span)
        return self.emit("rename", [v], {"mapping": mapping}, span)[0]

    def check_type(self, v: Value, want: TensorType, what: str, span, decl_span, rest: bool = False,
                   outer: Optional[dict[str, str]] = None) -> None:
        """`v` against a declared type. `outer` maps a block's axis parameters to the caller's
        wires, so messages name the axes the caller knows."""
        got = v.type
        outer = outer or {}
        declared = f"{want.dtype}[{', '.join((['...'] if rest else []) + list(want.names))}]"

        def called(name: str) -> str:
            return f"`{outer[name]}` (the block's `{name}`)" if name in outer else f"`{name}`"

        if got.dtype != want.dtype:
            raise CompileError(Diagnostic(f"{what} must be {want.dtype}, but this is {got.dtype}", span)
                               .note(f"declared as {declared}", decl_span))
        for a in want.axes:
            if not got.has(a.name):
                diag = Diagnostic(f"{what} needs axis {called(a.name)}, but this value has "
                                  f"[{', '.join(outer.get(n, n) for n in got.names) or 'no axes'}]", span,
                                  help=did_you_mean(outer.get(a.name, a.name), [outer.get(n, n) for n in got.names]))
                raise CompileError(diag.note(f"declared as {declared}", decl_span))
            if got.axis(a.name).size != a.size:
                where = self.axis_span(a.name)
                diag = Diagnostic(f"axis {called(a.name)} is {got.axis(a.name).size} here but {a.size} in {what}", span)
                diag.note(f"declared as {declared}", decl_span)
                if where is not None:
                    diag.note(f"`{a.name}` declared here", where)
                raise CompileError(diag)
        extra = [n for n in got.names if not want.has(n)]
        if extra and not rest:
            raise CompileError(Diagnostic(f"{what} has axes [{', '.join(outer.get(n, n) for n in want.names)}], "
                                          f"but this value also has [{', '.join(outer.get(n, n) for n in extra)}]", span)
                               .note(f"declared as {declared}", decl_span))

    def repeat(self, r: ast.Repeat) -> Value:
        count = r.count
        if isinstance(count, str):
            local = self.env.values.get(count)
            value = local.static if isinstance(local, Weak) else self.consts.get(count) if local is None else None
            if not isinstance(value, int) or isinstance(value, bool):
                raise error(f"`repeat {count}`: the count must be an integer constant", r.span,
                            did_you_mean(count, self.consts))
            count = value
        if count < 1:
            raise error(f"`repeat {count}`: the count must be at least 1", r.span)
        call = r.call
        if call.name not in self.program.blocks:
            raise error(f"`repeat` applies a block; `{call.name}` is not one", call.span,
                        did_you_mean(call.name, self.program.blocks))
        fn = self.program.blocks[call.name]
        if len(fn.results) != 1 or not call.args:
            raise error(f"`repeat` needs a block with at least one argument and one result; "
                        f"`{call.name}` returns {len(fn.results)}", call.span)
        name = call.instance or (snake(call.name) if r.shared else snake(call.name) + ".{i}")
        if not r.shared and "{i}" not in name:
            raise error(f"each copy needs its own parameter names: put `{{i}}` in `as \"{name}\"`", call.span,
                        f"write `as \"{name}.{{i}}\"`, or `repeat {r.count} shared` to share one set of weights")
        state = self.value(self.expr(call.args[0]), call.args[0].span)
        rest = list(call.args[1:])
        outer_scope, outer_sharing = self.scope, self.sharing_params
        group = name.replace(".{i}", "").replace("{i}", "")
        try:
            for i in range(count):
                self.scope = outer_scope.in_repeat(group, i, count)
                self.sharing_params = r.shared and i > 0 or outer_sharing
                self.env.values["\0state"] = state
                step = ast.Call(call.name, call.binding, (ast.Var("\0state", call.args[0].span),) + tuple(rest),
                                None, None, call.span, call.name_span)
                out = self.call_block(step, name.replace("{i}", str(i)))
                if isinstance(out, list):
                    raise error("`repeat` needs a block with one result", call.span)
                out = self.value(out, call.span)
                if out.type.dtype != state.type.dtype or not out.type.same_axes(state.type):
                    raise error(f"`repeat` feeds each result back in, so `{call.name}` must return what it takes: "
                                f"it takes {state.type} and returns {out.type}", call.span)
                state = out
        finally:
            self.env.values.pop("\0state", None)
            self.scope, self.sharing_params = outer_scope, outer_sharing
        return state


_FOLD = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b if b != 0 else math.copysign(math.inf, a) if a else math.nan,
    "pow": lambda a, b: float(a) ** b, "neg": lambda a: -a,
    "sqrt": lambda a: math.sqrt(a) if a >= 0 else math.nan,
    "rsqrt": lambda a: 1 / math.sqrt(a) if a > 0 else math.inf if a == 0 else math.nan,
    "exp": lambda a: math.exp(min(a, 700)), "log": lambda a: math.log(a) if a > 0 else -math.inf if a == 0 else math.nan,
    "minimum": min, "maximum": max,
}


def _defined_names(stmt: ast.Stmt) -> list[str]:
    if isinstance(stmt, ast.ParamStmt):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return list(stmt.targets)
    return []


def build_graph(program: Program, overrides: Optional[dict[str, str]] = None,
                max_params: int = DEFAULT_MAX_PARAMS) -> Graph:
    return Builder(program, overrides, max_params).build()
