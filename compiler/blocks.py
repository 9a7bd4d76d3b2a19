"""Block calls and repeats: binding axis and constant parameters, renaming wires at the
boundary, checking argument and result types, unrolling `repeat`.

A mixin of the Builder (compiler/build.py).
"""
from __future__ import annotations

from typing import Optional, Union

from archlang.grammar import ast

from .axes import Axis, TensorType
from .diagnostics import CompileError, Diagnostic, did_you_mean, error, plural
from .ir import Value
from .values import MAX_CALL_DEPTH, MAX_REPEAT, Env, Operand, Poison, Poisoned, Weak, snake


def check_arguments(call: ast.Call, fn: ast.Function) -> None:
    """A block call passes one positional argument per declared argument."""
    if any(isinstance(a, ast.Keyword) for a in call.args):
        raise error(f"block `{call.name}` takes its arguments by position", call.span)
    if len(call.args) != len(fn.args):
        raise CompileError(Diagnostic(f"block `{call.name}` takes {plural(len(fn.args), 'argument')} but is given "
                                      f"{len(call.args)}", call.span).note("defined here", fn.span))


class Blocks:
    def call_block(self, call: ast.Call, instance: str) -> Union[Operand, list[Operand]]:
        fn = self.program.blocks[call.name]
        if call.name in self.call_stack:
            raise error(f"block `{call.name}` calls itself (through {' -> '.join(self.call_stack + [call.name])}); "
                        "blocks may not be recursive", call.span, "use `repeat N` for repetition")
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            raise error(f"blocks nest deeper than {MAX_CALL_DEPTH} calls", call.span)
        if call.over is not None:
            raise error(f"block `{call.name}` takes no `over` clause", call.over.span)
        args = list(call.args)
        check_arguments(call, fn)
        for i, decl in enumerate(fn.args):
            if any(d.name == decl.name for d in fn.args[:i]):
                raise error(f"block `{fn.name}` has two arguments named `{decl.name}`", decl.span)
        # Arguments first: an op in an argument may declare the axis the brackets then bind.
        arg_values = [self.value(self.expr(a), a.span) for a in args]
        inner_axes, renames = self._bind_axes(fn, call)
        consts = self._bind_consts(fn, call)
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
                raise Poisoned()  # the body's errors are recorded; the caller's statement is poisoned
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
        if count > MAX_REPEAT:
            raise error(f"`repeat {count}`: at most {MAX_REPEAT:,} copies", r.span)
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
