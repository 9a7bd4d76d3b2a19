"""Compile-time structure: `if` statements, `true`/`false`, and the values a block's
constant parameters may take (numbers, booleans, words such as `same`, per-axis tuples).

    block Conv[..., bias = true](x: ...) -> ... {
      if bias { param bias: [cout] = zeros ... }

The condition is known at compile time (a constant, a block's constant parameter, `--set`),
so only the branch it picks is built: parameters declared in the other branch do not exist,
and its statements are not checked. A mixin of the Builder (compiler/build.py).
"""
from __future__ import annotations

import math
from typing import Any, Optional

from archlang.grammar import ast

from .diagnostics import CompileError, error
from .values import Binding, Poison, Weak

COMPARE = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
           "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}
LOGIC = {"and": lambda a, b: a and b, "or": lambda a, b: a or b, "not": lambda a: not a}
SYMBOL = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "and", "or": "or",
          "not": "not", "add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "neg": "-"}


def show(v: Any) -> str:
    """A compile-time value as the source writes it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(show(x) for x in v) + ")"
    return str(v)


def kind(v: Any) -> str:
    return ("a boolean" if isinstance(v, bool) else "a word" if isinstance(v, str)
            else "a tuple" if isinstance(v, tuple) else "a number")


def fold_static(op: str, values: list[Any], span: Optional[ast.Span]) -> Optional[Weak]:
    """Comparisons and logic between compile-time values, folded to `true`/`false`; None when
    `op` is arithmetic on numbers (the Builder folds that). Booleans, words and tuples are
    refused where they would be read as numbers."""
    if op in LOGIC:
        if not all(isinstance(v, bool) for v in values):
            bad = next(v for v in values if not isinstance(v, bool))
            raise error(f"`{SYMBOL[op]}` needs true or false, but `{show(bad)}` is {kind(bad)}", span,
                        "compare it first, as in `stride > 1`")
        return Weak(LOGIC[op](*values), span)
    odd = [v for v in values if isinstance(v, (bool, str, tuple))]
    if op in ("eq", "ne") and (all(isinstance(v, (bool, str, tuple)) for v in values)
                               or not odd):
        return Weak(COMPARE[op](*values), span)
    if odd:
        raise error(f"`{SYMBOL.get(op, op)}` needs numbers, but `{show(odd[0])}` is {kind(odd[0])}", span)
    if op in COMPARE:
        return Weak(COMPARE[op](*values), span)
    return None


def check_scalar(x: Weak, dtype: Optional[str]) -> Optional[str]:
    """The dtype a compile-time value becomes as a tensor, or an error if it cannot become one."""
    v = x.value
    if isinstance(v, (str, tuple)):
        raise error(f"`{show(v)}` is {kind(v)}, not a number; it can only be given to a keyword", x.span)
    if isinstance(v, bool):
        if dtype not in (None, "bool"):
            raise error(f"`{show(v)}` is a boolean and cannot meet a {dtype} tensor", x.span,
                        "use it in `if`, or in `where(...)`")
        return "bool"
    return dtype


class Conditions:
    def branch(self, stmt: ast.If) -> list[ast.Stmt]:
        """The statements of the branch the condition picks; on an error, none (its names poisoned)."""
        try:
            cond = self.expr(stmt.condition)
            if not isinstance(cond, Weak) or not isinstance(cond.static, bool):
                what = (f"`{show(cond.static)}`, {kind(cond.static)}" if isinstance(cond, Weak)
                        and cond.static is not None else "a tensor, known only when the model runs")
                raise error(f"`if` needs true or false known at compile time, but this is {what}",
                            stmt.condition.span,
                            "use a constant, a block's constant parameter or a comparison of them "
                            "(`bias`, `stride > 1`); `where(...)` chooses between tensors")
        except CompileError as e:
            self.record(e)
            for s in stmt.then + stmt.otherwise:
                for name in defined_names(s):
                    self.env.values[name] = Poison()
                    self.env.bindings[name] = Binding(None, "value", read=True)
            return []
        skipped = stmt.otherwise if cond.static else stmt.then
        for s in skipped:
            for name in defined_names(s):
                self.untaken[(id(self.env), name)] = (self.env, stmt.condition.span)  # the env kept: ids stay unique
        return list(stmt.then if cond.static else stmt.otherwise)

    def untaken_help(self, name: str) -> Optional[str]:
        """For `unknown name`: the name is made only in a branch this `if` did not take."""
        found = self.untaken.get((id(self.env), name))
        return None if found is None else (f"`{name}` is made only in a branch of the `if` at line "
                                           f"{found[1].line} that its condition did not pick")

    def const_value(self, e: Any) -> Any:
        """A constant parameter's value: a number, `true`/`false`, a word (`same`, `"same"`) or a
        tuple of them (`(2, 1)`, `((0, 1), (1, 1))`)."""
        if isinstance(e, ast.StringArg):
            return e.value
        if isinstance(e, ast.Tuple):
            return tuple(self.const_value(i) for i in e.items)
        if isinstance(e, ast.Var) and e.name not in self.consts and e.name not in self.env.axes \
                and not isinstance(self.env.values.get(e.name), Weak):
            return e.name  # a bare word, as op keywords take them (`padding=same`), even where a tensor is `same`
        w = self.expr(e)
        if not isinstance(w, Weak) or w.static is None:
            raise error("this must be known at compile time (a number, true or false, a word or a tuple)",
                        getattr(e, "span", None))
        v = w.static
        if isinstance(v, float) and math.isnan(v):
            raise error("this is not a number", getattr(e, "span", None))
        return v


def defined_names(stmt: ast.Stmt) -> list[str]:
    """The names a statement binds, in both branches of an `if`."""
    if isinstance(stmt, ast.If):
        return [n for s in stmt.then + stmt.otherwise for n in defined_names(s)]
    if isinstance(stmt, ast.ParamStmt):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return list(stmt.targets)
    return []
