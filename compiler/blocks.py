"""Block calls and repeats: binding axis and constant parameters, renaming wires at the
boundary, checking argument and result types, unrolling `repeat`.

One caller wire may bind several axis parameters (`Linear[embed, embed]`); each argument
takes it as the parameter its declared type names, and each result hands it back, so long
as no value would carry the wire twice. A call `as ""` adds no prefix to the parameter
names of the block (its scope still records the call, for diagrams).

A mixin of the Builder (compiler/build.py).
"""
from __future__ import annotations

from typing import Optional, Union

from archlang.grammar import ast

from .axes import Axis, TensorType
from .diagnostics import CompileError, Diagnostic, did_you_mean, error, plural
from .ir import Value
from . import repeat_names
from .conditions import show
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
        inner_axes, bound = self._bind_axes(fn, call)
        outer_names = {p: w for p, w in bound.items() if p != w}  # for messages in the caller's words
        consts = self._bind_consts(fn, call)
        outer_env, outer_scope = self.env, self.scope
        self.env = Env(dict(self.global_axes), dict(self.global_axis_spans), dict(consts), fn)
        for name, ax in inner_axes.items():
            self.env.axes[name] = ax
            self.env.axis_spans[name] = fn.span
        # `as ""`: the block's parameters take no prefix of their own; diagrams still see a call.
        unprefixed = instance == "" or call.instance == ""
        self.scope = self.scope.child(instance or snake(call.name), call.name, prefixed=not unprefixed)
        self.call_stack.append(call.name)
        self.call_spans.append(call.span)
        try:
            for decl, v, a in zip(fn.args, arg_values, args):
                entry = self._entry_renames(fn, decl, v, bound, a.span)
                v = self._rename(v, entry, a.span)
                want = self.resolve_type(decl.type, allow_rest=True)
                if isinstance(v, Value) and not v.hint:
                    v.hint = decl.name
                self.check_type(v, want, f"argument `{decl.name}` of `{call.name}`", a.span, decl.span,
                                rest=any(x.name == "..." for x in decl.type.axes), outer=outer_names,
                                shown_as={inner: wire for wire, inner in entry.items()})
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
                                rest=any(x.name == "..." for x in decl.type.axes), outer=outer_names)
                outs.append(r)
        finally:
            self.call_stack.pop()
            self.call_spans.pop()
            self.env, self.scope = outer_env, outer_scope
        outs = [self._rename(v, self._exit_renames(fn, decl, v, outer_names, call.span), call.span)
                for decl, v in zip(fn.results, outs)]
        return outs[0] if len(outs) == 1 else outs

    def _bind_consts(self, fn: ast.Function, call: ast.Call) -> dict[str, Weak]:
        """The block's constant parameters: keyword bindings, else their defaults. A value is a
        number, `true`/`false`, a word (`same`) or a tuple (`(2, 1)`); one given for a boolean
        default must be a boolean, and the other way round."""
        given = {k.name: k for k in call.binding if isinstance(k, ast.Keyword)}
        declared = dict(fn.const_params)
        for name, k in given.items():
            if name not in declared:
                raise error(f"block `{fn.name}` has no constant parameter `{name}`", k.span,
                            did_you_mean(name, declared))
        out: dict[str, Weak] = {}
        for name, default in fn.const_params:
            fallback = self._in_globals(default)
            if name not in given:
                out[name] = Weak(fallback, default.span)
                continue
            value = self.const_value(given[name].value)
            if isinstance(value, bool) != isinstance(fallback, bool):
                takes = "true or false" if isinstance(fallback, bool) else "not a boolean"
                raise CompileError(Diagnostic(f"constant parameter `{name}` of `{fn.name}` is {takes}, but is given "
                                              f"`{show(value)}`", given[name].value.span)
                                   .note(f"declared as `{name} = {show(fallback)}`", default.span))
            out[name] = Weak(value, given[name].value.span)
        return out

    def _in_globals(self, e: ast.Expr):
        saved = self.env
        self.env = Env(dict(self.global_axes), dict(self.global_axis_spans), {}, saved.function)
        try:
            return self.const_value(e)
        finally:
            self.env = saved

    def _bind_axes(self, fn: ast.Function, call: ast.Call) -> tuple[dict[str, Axis], dict[str, str]]:
        """The block's axis parameters as inner axes, and the caller's wire each is bound to.

        One wire may bind several parameters (`Conv[c, c, ...]`, a stride-1 conv's `h, w, h, w`):
        inside the block they stay distinct wires of the wire's size; which of them an argument's
        axis becomes is read off the argument's declared type (`_entry_renames`)."""
        binding = [b for b in call.binding if not isinstance(b, ast.Keyword)]
        if binding and len(binding) != len(fn.axis_params):
            raise error(f"block `{fn.name}` takes {plural(len(fn.axis_params), 'axis parameter')} "
                        f"[{', '.join(fn.axis_params)}] but is given {len(binding)}", call.span)
        inner: dict[str, Axis] = {}
        bound: dict[str, str] = {}
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
            inner[p] = Axis(p, outer.size)
            bound[p] = outer.name
        return inner, bound

    def _entry_renames(self, fn: ast.Function, decl: ast.TypedArg, v: Value, bound: dict[str, str],
                       span) -> dict[str, str]:
        """Caller wire -> parameter for one argument. A wire bound to several parameters
        becomes the one the argument's declared type names."""
        declared = [x.name for x in decl.type.axes]
        params_of: dict[str, list[str]] = {}
        for p, wire in bound.items():
            params_of.setdefault(wire, []).append(p)
        out: dict[str, str] = {}
        for wire, params in params_of.items():
            named = [p for p in params if p in declared]
            if len(named) > 1:
                raise CompileError(Diagnostic(
                    f"argument `{decl.name}` of `{fn.name}` is declared with {_both(named)}, and this call binds "
                    f"{_all(named)} to `{wire}`: one value cannot carry `{wire}` twice", span,
                    help=f"bind `{named[-1]}` to another wire, declared with `axis other ~ {wire}`")
                    .note(f"declared as {_declared(decl)}", decl.span))
            if not v.type.has(wire):
                continue
            if not named and len(params) > 1:
                raise CompileError(Diagnostic(
                    f"`{wire}` of argument `{decl.name}` could be the block's {_either(params)}: this call binds "
                    f"{_all(params)} to `{wire}`, and the argument's declared type names "
                    f"{'neither' if len(params) == 2 else 'none of them'}", span,
                    help=f"bind them to different wires, or name one in the type of `{decl.name}`")
                    .note(f"declared as {_declared(decl)}", decl.span))
            target = named[0] if named else params[0]
            if target != wire:
                out[wire] = target
        return out

    def _exit_renames(self, fn: ast.Function, decl: ast.TypedArg, v: Value, outer: dict[str, str],
                      span) -> dict[str, str]:
        """Parameter -> caller wire for one result; two of its axes may not land on one wire."""
        back = {n: outer[n] for n in v.type.names if n in outer}
        landing: dict[str, list[str]] = {}
        for n in v.type.names:
            landing.setdefault(back.get(n, n), []).append(n)
        for wire, names in landing.items():
            if len(names) > 1:
                what = "the result of" if len(fn.results) == 1 else f"result `{decl.name}` of"
                raise CompileError(Diagnostic(
                    f"{what} `{fn.name}` has axes {_both(names)}, and this call binds them to the one wire "
                    f"`{wire}`: a value cannot carry `{wire}` twice", span,
                    help=f"bind {_either([x for x in names if x in outer][-1:])} to another wire, declared with "
                         f"`axis other ~ {wire}`")
                    .note(f"declared as {_declared(decl)}", decl.span))
        return back

    def _rename(self, v: Value, renames: dict[str, str], span) -> Value:
        mapping = tuple((a, renames[a]) for a in v.type.names if a in renames and renames[a] != a)
        if not mapping:
            return v
        clash = [new for _, new in mapping if v.type.has(new) and new not in renames]
        if clash:
            raise error(f"renaming would give two axes named `{clash[0]}`", span)
        return self.emit("rename", [v], {"mapping": mapping}, span)[0]

    def check_type(self, v: Value, want: TensorType, what: str, span, decl_span, rest: bool = False,
                   outer: Optional[dict[str, str]] = None, shown_as: Optional[dict[str, str]] = None) -> None:
        """`v` against a declared type. `outer` maps a block's axis parameters to the caller's
        wires, so messages name the axes the caller knows; `shown_as` maps `v`'s axes to the
        caller's names for them (an argument's own renames; `outer` by default)."""
        got = v.type
        outer = outer or {}
        shown_as = outer if shown_as is None else shown_as
        declared = f"{want.dtype}[{', '.join((['...'] if rest else []) + list(want.names))}]"

        def called(name: str) -> str:
            return f"`{outer[name]}` (the block's `{name}`)" if name in outer else f"`{name}`"

        if got.dtype != want.dtype:
            raise CompileError(Diagnostic(f"{what} must be {want.dtype}, but this is {got.dtype}", span)
                               .note(f"declared as {declared}", decl_span))
        for a in want.axes:
            if not got.has(a.name):
                shown = [shown_as.get(n, n) for n in got.names]
                if outer.get(a.name, a.name) in shown:
                    # The caller's name for another of the block's axes: say which one it is.
                    shown = [f"{shown_as.get(n, n)} (the block's {n})" for n in got.names]
                    hint = None
                else:
                    hint = did_you_mean(outer.get(a.name, a.name), shown)
                diag = Diagnostic(f"{what} needs axis {called(a.name)}, but this value has "
                                  f"[{', '.join(shown) or 'no axes'}]", span, help=hint)
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
            shown = ", ".join(shown_as.get(n, n) for n in extra)
            raise CompileError(Diagnostic(f"{what} has axes [{', '.join(outer.get(n, n) for n in want.names)}], "
                                          f"but this value also has [{shown}]", span)
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
        name = call.instance if call.instance is not None else (snake(call.name) if r.shared else snake(call.name) + ".{i}")
        names, group = self._copy_names(r, name, count)
        state = self.value(self.expr(call.args[0]), call.args[0].span)
        rest = list(call.args[1:])
        outer_scope, outer_sharing = self.scope, self.sharing_params
        try:
            for i in range(count):
                self.scope = outer_scope.in_repeat(group, i, count)
                self.sharing_params = r.shared and i > 0 or outer_sharing
                self.env.values["\0state"] = state
                step = ast.Call(call.name, call.binding, (ast.Var("\0state", call.args[0].span),) + tuple(rest),
                                None, None, call.span, call.name_span)
                out = self.call_block(step, names[i])
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

    def _copy_names(self, r: ast.Repeat, name: str, count: int) -> tuple[list[str], str]:
        """Each copy's instance name, from a template such as `layers.{i}` or `blocks.5.{i+1}`,
        and the repeat's key for the IR's scopes (`repeat_names.repeat_key`)."""
        call, span = r.call, r.call.instance_span
        parts = repeat_names.parse_template(name, span)

        def constant(n: str):
            local = self.env.values.get(n)
            return local.static if isinstance(local, Weak) else self.consts.get(n) if local is None else None
        known = [n for n, v in self.env.values.items() if isinstance(v, Weak)] + list(self.consts)
        names = [repeat_names.render(parts, i, constant, known, span) for i in range(count)]
        if not r.shared and not repeat_names.uses_index(parts):
            raise error(f"each copy needs its own parameter names: put `{{i}}` in `as \"{name}\"`", call.span,
                        f"write `as \"{name + '.' if name else ''}{{i}}\"`, or `repeat {r.count} shared` to share one set of weights")
        if not r.shared:
            first: dict[str, int] = {}
            for i, n in enumerate(names):
                if n in first:
                    raise error(f"copies {first[n]} and {i} would both be named `{n}`; each copy needs its own "
                                "parameter names", span or call.span,
                                "the copy number must change with `i`, as in `{i}` or `{i+1}`")
                first[n] = i
        return names, repeat_names.repeat_key(parts, constant)


def _both(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return " and ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _either(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return " or ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _all(names: list[str]) -> str:
    return "both" if len(names) == 2 else "them all"


def _declared(decl: ast.TypedArg) -> str:
    return f"{decl.type.dtype}[{', '.join(x.name for x in decl.type.axes)}]"
