"""Stored names made from constants: `from "weight_ih_l{layer}{suffix}"`.

A checkpoint may number its tensors with a suffix rather than a dotted prefix (torch's
`nn.LSTM` stores `weight_ih_l0`, `weight_ih_l1`, `weight_ih_l0_reverse` on one module), so
one block declaring `weight_ih` cannot bind every layer through instance names alone. A
`{name}` in a `from` string is replaced by the value of a constant in scope (a block's
constant parameter, or a top-level `const`): a whole number or a word. The parameter is then
named by the stored name it makes, so each call of the block declares its own parameter.
(`{i}` alone keeps its older meaning: the index of the enclosing `repeat` copy.)
"""
from __future__ import annotations

import re
from typing import Callable, Optional

from archlang.grammar import ast

from .conditions import show
from .diagnostics import did_you_mean, error

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def is_templated(name: str) -> bool:
    """Whether `name` has a `{...}` other than the repeat index `{i}`."""
    return any(m.group(1).strip() != "i" for m in _PLACEHOLDER.finditer(name))


def interpolate(name: str, constant: Callable[[str], object], known: list[str], span: Optional[ast.Span]) -> str:
    """`name` with each `{c}` replaced by constant c's value. `constant(c)` is the value, or
    None when there is no such constant."""
    def value(m: re.Match) -> str:
        key = m.group(1).strip()
        where = _inside(span, m.start(), len(m.group(0)))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise error(f"`{m.group(0)}` in a stored name must name one constant, as in `{{layer}}`", where)
        v = constant(key)
        if v is None:
            raise error(f"unknown constant `{key}` in the stored name", where,
                        did_you_mean(key, known) or "a stored name takes a block's constant parameters and `const`s")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise error(f"`{key}` is {show(v)}; a stored name takes whole numbers and words", where)
        return str(v)
    out = _PLACEHOLDER.sub(value, name)
    if "{" in out or "}" in out:
        raise error("unbalanced `{` or `}` in the stored name", span)
    return out


def _inside(span: Optional[ast.Span], start: int, length: int) -> Optional[ast.Span]:
    """The span of characters [start, start + length) of the name in `from "name" ...` (the
    clause's span starts at `from`)."""
    if span is None or span.line != span.end_line:
        return span
    column = span.column + len('from "') + start
    return ast.Span(span.file, span.line, column, span.line, column + length)
