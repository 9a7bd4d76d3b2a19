"""AST -> typed IR.

The builder evaluates the model's body as a dataflow program: names bind IR values,
blocks are instantiated at each call (with their axis parameters bound to the caller's
wires and their parameters named by instance path), repeats unroll with their copies
recorded in each node's scope, and every op's type rule runs as its node is created.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from archlang.grammar import ast

from . import ops
from .axes import DTYPES, INT_DTYPES, Axis, Size
from .blocks import Blocks
from .declarations import Declarations
from .diagnostics import CompileError, Diagnostic, did_you_mean, error, plural
from .ir import Graph, Scope, Value
from .program import Program
from .scans import Scans
from .values import DEFAULT_MAX_PARAMS, MAX_ERRORS, MAX_NODES, MAX_STATIC_INT, Fatal, Binding, Env, Operand, Poison, Poisoned, Weak, snake



class Builder(Declarations, Blocks, Scans):
    def __init__(self, program: Program, overrides: Optional[dict[str, str]] = None,
                 max_params: int = DEFAULT_MAX_PARAMS):
        self.program = program
        self.max_params = max_params
        self.max_nodes = min(MAX_NODES, max(10_000, max_params // 10))
        self.n_params = 0
        self.overrides = dict(overrides or {})
        self.graph = Graph(program.model.name if program.model else "model")
        self.root = self.graph  # the model's graph (holds every parameter); `self.graph` may be a scan body
        self.scope = Scope()
        self.consts: dict[str, Union[int, float]] = {}
        self.global_axes: dict[str, Axis] = {}
        self.global_axis_spans: dict[str, Optional[ast.Span]] = {}
        self.env: Optional[Env] = None
        self.call_stack: list[str] = []
        self.sharing_params = False
        self.param_values: dict[str, tuple[Graph, Value]] = {}  # name -> (graph, its first read there)
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
        for i, arg in enumerate(model.args):
            if any(a.name == arg.name for a in model.args[:i]):
                raise error(f"two inputs are named `{arg.name}`", arg.span)
            t = self.resolve_type(arg.type, allow_rest=False)
            self._check_input_size(arg, t)
            v = self.graph.add_input(arg.name, t)
            self.graph.input_spans[arg.name] = arg.span
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
        for n, _ in self.graph.inputs:
            if n in self.graph.params:
                raise error(f"parameter `{n}` has the name of an input; ONNX needs them apart",
                            self.graph.params[n].span)
        seen_results: set[str] = set()
        for decl in model.results:
            if decl.name in seen_results:
                raise error(f"two results are named `{decl.name}`", decl.span)
            seen_results.add(decl.name)
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

    def _check_input_size(self, arg: ast.TypedArg, t) -> None:
        sizes = [a.size.value for a in t.axes if a.size.is_static]
        if sizes and math.prod(sizes) > self.max_params:
            raise error(f"input `{arg.name}` would hold {math.prod(sizes):,} elements, over the budget of "
                        f"{self.max_params:,}", arg.span, "raise it with `--max-params N`")

    def _check_symbols_bound(self) -> None:
        for n in self.graph.nodes:
            for v in n.outputs:
                for a in v.type.axes:
                    missing = a.size.symbols - set(self.graph.symbols)
                    if missing:
                        raise error(f"the size of axis `{a.name}` depends on `{sorted(missing)[0]}`, "
                                    f"which no model input carries", n.span,
                                    "symbolic axes are bound by the model's inputs; give this one a size")

    # ---- statements -----------------------------------------------------------

    def run_body(self, fn: ast.Function) -> list[Operand]:
        """Run the statements; a failing one is recorded and its names poisoned."""
        for stmt in fn.body:
            if isinstance(stmt, ast.Return):
                try:
                    results = [self.expr(v) for v in stmt.values]
                except Fatal as e:
                    raise CompileError(*self.errors, *e.diagnostics) from None
                except CompileError as e:
                    self.record(e)
                    results = [Poison() for _ in fn.results]
                self._warn_unread()
                return results
            try:
                self.statement(stmt)
            except Fatal as e:
                raise CompileError(*self.errors, *e.diagnostics) from None
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
            elif isinstance(stmt.value, ast.Scan):
                results = self.scan(stmt.value)
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
        if all(isinstance(x, Weak) and x.static is not None for x in xs) and op in _FOLD:
            return Weak(_fold(op, [x.static for x in xs]), span)
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
        if len(self.graph.nodes) >= self.max_nodes:
            raise Fatal(Diagnostic(f"the model unrolls to more than {self.max_nodes:,} operations", span,
                                   help="is a `repeat` count far larger than meant? (`--max-params` sets "
                                        "this budget too)"))
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

    # ---- calls (blocks: compiler/blocks.py) -----------------------------------------

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


def _defined_names(stmt: ast.Stmt) -> list[str]:
    if isinstance(stmt, ast.ParamStmt):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return list(stmt.targets)
    return []


def build_graph(program: Program, overrides: Optional[dict[str, str]] = None,
                max_params: int = DEFAULT_MAX_PARAMS) -> Graph:
    return Builder(program, overrides, max_params).build()
