"""Declarations: axes and constants (in source order), sizes, tensor types and parameters.

A mixin of the Builder (compiler/build.py); it reads `self.env`, `self.consts`,
`self.graph` and reports through `error`.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import numpy as np

from archlang.grammar import ast

from . import stored_names
from .axes import Axis, Size, TensorType
from .diagnostics import CompileError, Diagnostic, did_you_mean, error
from .ir import ParamSpec, Value
from .ops.registry import numpy_dtype
from .values import INITIALIZERS, MAX_STATIC_INT, Env, Weak, format_layout, snake


class Declarations:
    def _global_declarations(self) -> None:
        """Axes and constants in source order: each may use those declared before it."""
        for d in self.program.decls:
            if isinstance(d, ast.AxisDef):
                self.declare_axis(d, self.env, override=self.overrides.get(d.name))
                continue
            if d.name in self.overrides:
                text = self.overrides[d.name].strip()
                self.consts[d.name] = (text == "true") if text in ("true", "false") else \
                    self._parse_override(d.name, text, d.span)
                continue
            w = self.expr(d.value)
            if not isinstance(w, Weak) or w.static is None:
                raise error(f"constant `{d.name}` must be a number or true/false", d.value.span)
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
        if size.is_static and size.value >= MAX_STATIC_INT:
            raise error(f"axis `{d.name}` would have size {size}, beyond what any tensor can hold", d.span)
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

    def param(self, stmt: ast.ParamStmt) -> Value:
        stored = self._stored_name(stmt)
        full = ".".join(self.scope.prefix + (stored or stmt.name,))
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
        if full in self.root.params:
            if self.sharing_params and full in self.param_values:
                graph, v = self.param_values[full]
                if graph is self.graph:
                    return v
                # The shared weight was first read in another graph (a scan body, or outside
                # one): read it again here, under the same name.
                return self.emit("param", [], {"name": full, "type": v.type}, stmt.span)[0]
            first_call = self.param_calls.get(full)
            here = self.call_spans[-1] if self.call_spans else stmt.span
            instance = ".".join(self.scope.prefix) or "the model"
            unprefixed = self._unprefixed_clash(full, stmt)
            if unprefixed is not None:
                diag = unprefixed
            elif first_call is not None and self.call_spans:
                diag = Diagnostic(f"a second call is also named `{instance}`, so parameter `{full}` would be "
                                  "declared twice", here,
                                  help=f"name each call with `as`, as in `... as {self.scope.path[-1]}_2`")
                diag.note(f"the first call named `{instance}` is here", first_call)
            else:
                diag = Diagnostic(f"parameter `{full}` is declared twice", stmt.span)
                diag.note("first declared here", self.root.params[full].span)
            raise CompileError(diag)
        count = math.prod(ax.size.value for ax in axes)
        self.n_params += count
        if self.n_params > self.max_params:
            raise error(f"parameters would reach {self.n_params:,} elements, over the budget of {self.max_params:,}",
                        stmt.span, "raise it with `--max-params N` if the machine can hold them")
        init = self.param_init(stmt, t)
        source = ".".join(self.scope.prefix + (stmt.source.name,)) if stmt.source and not stored else full
        if stmt.source and "{i}" in stmt.source.name:
            source = stmt.source.name.replace("{i}", str(self.scope.repeat[-1][1] if self.scope.repeat else 0))
        layout = self.param_layout(stmt, t)
        self.root.params[full] = ParamSpec(full, t, init, stmt.span, source, layout)
        if self.call_spans:
            self.param_calls[full] = self.call_spans[-1]
        self.param_origins[full] = (self.scope, tuple(self.call_spans))
        v = self.emit("param", [], {"name": full, "type": t}, stmt.span)[0]
        v.hint = full
        self.param_values[full] = (self.graph, v)
        return v

    def _stored_name(self, stmt: ast.ParamStmt) -> Optional[str]:
        """A `from` name made from constants (`"weight_ih_l{layer}"`), which then also names the
        parameter (compiler/stored_names.py); None for a plain one."""
        if stmt.source is None or not stored_names.is_templated(stmt.source.name):
            return None

        def constant(n: str):
            local = self.env.values.get(n)
            return local.static if isinstance(local, Weak) else self.consts.get(n) if local is None else None
        known = [n for n, v in self.env.values.items() if isinstance(v, Weak)] + list(self.consts)
        return stored_names.interpolate(stmt.source.name, constant, known, stmt.source.span)

    def _unprefixed_clash(self, full: str, stmt: ast.ParamStmt) -> Optional[Diagnostic]:
        """Two parameters of one name, met because a call `as ""` gave one of them no prefix of
        its own: blame that call (the outermost such call past where the two paths part)."""
        if full not in self.param_origins:
            return None
        old_scope, old_calls = self.param_origins[full]
        new_scope, new_calls = self.scope, tuple(self.call_spans)
        common = 0
        while (common < min(len(old_calls), len(new_calls)) and old_calls[common] == new_calls[common]
               and old_scope.path[common] == new_scope.path[common]):
            common += 1
        first = self.root.params[full].span
        for scope, calls, other in ((new_scope, new_calls, old_calls), (old_scope, old_calls, new_calls)):
            depth = min((d for d in scope.unprefixed if common <= d < len(calls)), default=None)
            if depth is None:
                continue
            block = scope.block[depth]
            diag = Diagnostic(f"parameter `{full}` is declared twice: `{block}` is called with `as \"\"`, so its "
                              "parameters are named as if declared by its caller", calls[depth],
                              help=f"rename one of them, or name the call (`as {snake(block)}`) to prefix its "
                                   "parameters")
            if first == stmt.span and depth < len(other):  # one block called twice
                diag.help = (f"name each call (`as {snake(block)}_1`, `as {snake(block)}_2`) to give each its own "
                             "parameters")
                return diag.note("the other call is here", other[depth])
            return diag.note("first declared here", first).note("and again here", stmt.span)
        return None

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
        stored = numpy_dtype(t.dtype)
        limit = float(np.finfo(stored).max if stored.kind == "f" else np.iinfo(stored).max if stored.kind in "iu" else 1)
        for a, arg in zip(args, init.args):
            if math.isfinite(a) and abs(a) > limit:
                raise error(f"{a:g} does not fit in {t.dtype}", getattr(arg, "span", init.span))
        if init.name in ("normal", "uniform") and not all(math.isfinite(a) for a in args):
            raise error(f"the arguments of `{init.name}` must be finite numbers", init.span)
        if init.name == "uniform" and len(args) == 2:
            if not args[0] <= args[1]:
                raise error(f"`uniform({args[0]:g}, {args[1]:g})`: the low end must not be above the high end",
                            init.span)
            if not math.isfinite(args[1] - args[0]):
                raise error(f"`uniform({args[0]:g}, {args[1]:g})`: the range is too wide to draw from", init.span)
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
