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

from archlang.grammar import ast

from . import ops
from .axes import Axis, Size
from .blocks import Blocks
from .conditions import Conditions, defined_names
from .declarations import Declarations
from .expressions import Expressions
from .diagnostics import CompileError, Diagnostic, did_you_mean, error, plural
from .ir import Graph, Scope, Value
from .program import Program
from .scans import Scans
from .values import DEFAULT_MAX_PARAMS, MAX_ERRORS, MAX_NODES, Binding, Env, Fatal, Operand, Poison



class Builder(Declarations, Blocks, Scans, Conditions, Expressions):
    def __init__(self, program: Program, overrides: Optional[dict[str, str]] = None,
                 max_params: int = DEFAULT_MAX_PARAMS):
        self.program = program
        self.max_params = max_params
        self.float_dtype = "f32"  # what a float literal or `zeros` is when nothing says; `--dtype` changes it
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
        self.param_origins: dict[str, tuple[Scope, tuple[ast.Span, ...]]] = {}  # -> its scope and call chain
        self.call_spans: list[ast.Span] = []
        self.returns: dict[int, ast.Return] = {}  # id(function) -> the `return` its last run reached
        self.untaken: dict[tuple[int, str], tuple] = {}  # (id(env), name) made only in a branch not taken
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
        """Run the statements; a failing one is recorded and its names poisoned. An `if` runs
        the statements of the branch its condition picks, in its place (compiler/conditions.py)."""
        pending = list(fn.body)[::-1]
        while pending:
            stmt = pending.pop()
            if isinstance(stmt, ast.If):
                pending.extend(self.branch(stmt)[::-1])
                continue
            if isinstance(stmt, ast.Return):
                self.returns[id(fn)] = stmt
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
                for name in defined_names(stmt):
                    self.env.values[name] = Poison()
                    self.env.bindings[name] = Binding(None, "value", read=True)
        raise error(f"`{fn.name}` has no `return`", fn.span)

    def _return_spans(self, fn: ast.Function) -> list[ast.Span]:
        stmt = self.returns.get(id(fn))
        return [v.span for v in stmt.values] if stmt else []

    def _return_span(self, fn: ast.Function) -> ast.Span:
        stmt = self.returns.get(id(fn))
        return stmt.span if stmt else fn.span

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


def build_graph(program: Program, overrides: Optional[dict[str, str]] = None,
                max_params: int = DEFAULT_MAX_PARAMS, float_dtype: str = "f32") -> Graph:
    """`float_dtype`: `--dtype`, read for every `f32` the program names (compiler/dtypes.py)."""
    from .dtypes import with_float_dtype
    builder = Builder(with_float_dtype(program, float_dtype), overrides, max_params)
    builder.float_dtype = float_dtype
    return builder.build()
