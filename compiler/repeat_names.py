"""Copy names of `repeat`: `as "layers.{i}"`, `as "blocks.5.{i+1}"`, `as "h.{2*i + offset}"`.

Each `{...}` in the instance name is an integer expression over the copy index `i`
(0, 1, ...) and integer constants, with `+ - * //` and parentheses; copy i is named by
the template with each placeholder replaced by its value at i. Errors point into the
string, at the placeholder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Union

from archlang.grammar import ast

from .diagnostics import did_you_mean, error

_TOKEN = re.compile(r"\s*(?:(?P<int>[0-9]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>//|[-+*()])|(?P<bad>\S))")
ALLOWED = "integer arithmetic over `i` and constants: `+ - * //` and parentheses"


@dataclass(frozen=True)
class Placeholder:
    """One `{...}`: its text, where it sits in the name, and its expression as nested tuples."""
    text: str
    start: int  # offset of `{` in the name
    expr: object  # int | ("name", str, offset) | (op, left, right)


Part = Union[str, Placeholder]


def _sub_span(span: Optional[ast.Span], start: int, length: int) -> Optional[ast.Span]:
    """The span of characters [start, start + length) of a one-line quoted name."""
    if span is None or span.line != span.end_line:
        return span
    column = span.column + 1 + start  # past the opening quote
    return ast.Span(span.file, span.line, column, span.line, column + length)


class _Parser:
    def __init__(self, text: str, base: int, span: Optional[ast.Span]):
        self.text, self.base, self.span = text, base, span
        self.tokens: list[tuple[str, str, int]] = []
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind == "bad":
                where = _sub_span(span, base + m.start("bad"), 1)
                if m.group("bad") == "/":
                    raise error("`/` is not allowed in a copy number", where, "use `//`, which rounds down")
                raise error(f"`{m.group('bad')}` is not allowed in a copy number", where, f"it takes {ALLOWED}")
            self.tokens.append((kind, m.group(kind), base + m.start(kind)))
        self.pos = 0

    def fail(self, message: str):
        at = self.tokens[self.pos][2] if self.pos < len(self.tokens) else self.base + len(self.text)
        raise error(message, _sub_span(self.span, at, 1), f"a copy number takes {ALLOWED}")

    def peek(self) -> Optional[str]:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def sum(self):
        left = self.product()
        while self.peek() in ("+", "-"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = (op, left, self.product())
        return left

    def product(self):
        left = self.atom()
        while self.peek() in ("*", "//"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = (op, left, self.atom())
        return left

    def atom(self):
        if self.pos >= len(self.tokens):
            self.fail("the copy number ends too early")
        kind, text, at = self.tokens[self.pos]
        self.pos += 1
        if kind == "int":
            return int(text)
        if kind == "name":
            return ("name", text, at)
        if text == "(":
            inner = self.sum()
            if self.peek() != ")":
                self.fail("expected `)` in the copy number")
            self.pos += 1
            return inner
        if text == "-":
            return ("-", 0, self.atom())
        self.pos -= 1
        self.fail(f"unexpected `{text}` in the copy number")


def parse_template(name: str, span: Optional[ast.Span]) -> list[Part]:
    """The name cut into literal text and placeholders."""
    parts: list[Part] = []
    pos = 0
    while pos < len(name):
        open_ = name.find("{", pos)
        close = name.find("}", pos)
        if close >= 0 and (open_ < 0 or close < open_):
            raise error("`}` without a `{` in the instance name", _sub_span(span, close, 1))
        if open_ < 0:
            parts.append(name[pos:])
            break
        if open_ > pos:
            parts.append(name[pos:open_])
        close = name.find("}", open_)
        if close < 0:
            raise error("`{` is never closed in the instance name", _sub_span(span, open_, 1),
                        "write the copy number as `{i}`, or `{i+1}` to count from 1")
        inner = name[open_ + 1:close]
        if not inner.strip():
            raise error("`{}` is empty; write the copy number as `{i}`", _sub_span(span, open_, 2))
        p = _Parser(inner, open_ + 1, span)
        expr = p.sum()
        if p.pos != len(p.tokens):
            p.fail(f"unexpected `{p.tokens[p.pos][1]}` in the copy number")
        parts.append(Placeholder(inner, open_, expr))
        pos = close + 1
    return parts


def uses_index(parts: list[Part]) -> bool:
    def mentions(e) -> bool:
        if isinstance(e, tuple):
            return e[1] == "i" if e[0] == "name" else mentions(e[1]) or mentions(e[2])
        return False
    return any(isinstance(p, Placeholder) and mentions(p.expr) for p in parts)


def render(parts: list[Part], i: int, constant: Callable[[str], object], constants: list[str],
           span: Optional[ast.Span]) -> str:
    """Copy i's name. `constant(name)` is a constant's value, or None if there is none."""
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
            continue

        def value(e) -> int:
            if isinstance(e, int):
                return e
            if e[0] == "name":
                if e[1] == "i":
                    return i
                v = constant(e[1])
                if v is None:
                    raise error(f"unknown name `{e[1]}` in the copy number; the copy index is `i`",
                                _sub_span(span, e[2], len(e[1])), did_you_mean(e[1], constants + ["i"]))
                if not isinstance(v, int) or isinstance(v, bool):
                    raise error(f"`{e[1]}` is {v!r}; a copy number needs whole numbers",
                                _sub_span(span, e[2], len(e[1])))
                return v
            a, b = value(e[1]), value(e[2])
            if e[0] == "//" and b == 0:
                raise error(f"division by zero in `{{{p.text}}}`", _sub_span(span, p.start, len(p.text) + 2))
            return a + b if e[0] == "+" else a - b if e[0] == "-" else a * b if e[0] == "*" else a // b

        n = value(p.expr)
        if n < 0:
            raise error(f"`{{{p.text}}}` numbers copy {i} as {n}; copy numbers must not be negative",
                        _sub_span(span, p.start, len(p.text) + 2))
        out.append(str(n))
    return "".join(out)


def group_name(parts: list[Part]) -> str:
    """The repeat's name without its copy numbers (`layer1.{i+1}` -> `layer1`), for the IR and diagrams."""
    text = ""
    for p in parts:
        if isinstance(p, Placeholder):
            text = text[:-1] if text.endswith(".") else text
        else:
            text += p
    return text


def _show(e, outer: bool = True) -> str:
    if isinstance(e, int):
        return str(e)
    if e[0] == "name":
        return e[1]
    text = f"{_show(e[1], False)}{e[0]}{_show(e[2], False)}"
    return text if outer else f"({text})"


def repeat_key(parts: list[Part], constant: Callable[[str], object]) -> str:
    """What names the repeat in the IR and diagrams: `h` for `h.{i}` (copies numbered 0, 1, ...),
    else the template with its constants replaced by their values (`layer1.{(i+1)}`), from
    which `copy_name` gives any copy's name back."""
    if all(isinstance(p, str) or p.expr == ("name", "i", p.expr[2]) for p in parts if not isinstance(p, str)):
        return group_name(parts)

    def fold(e):
        if isinstance(e, int):
            return e
        if e[0] == "name":
            return e if e[1] == "i" else constant(e[1])
        return (e[0], fold(e[1]), fold(e[2]))
    return "".join(p if isinstance(p, str) else "{" + _show(fold(p.expr)) + "}" for p in parts)


def copy_name(key: str, i: int) -> Optional[str]:
    """Copy i's instance name from a `repeat_key` with copy numbers; None for a plain `h`."""
    if "{" not in key:
        return None
    return render(parse_template(key, None), i, lambda n: None, [], None)
