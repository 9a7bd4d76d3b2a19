"""Syntax errors: what the parser's failures are reported as (the unexpected token, what was
expected in words, the unclosed bracket at the end of a file), and the nesting limit."""
from __future__ import annotations

import re
from typing import Optional

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast

KEYWORDS = {"use", "axis", "const", "block", "model", "param", "from", "as", "return",
            "repeat", "shared", "scan", "reverse", "over", "and", "or", "not", "inf",
            "if", "else", "true", "false"}

# What an expected terminal is called in an error message.
TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "NUMBER": "a number", "STRING": "a string",
    "DTYPE": "a dtype (f32, i64, ...)", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`",
    "__ANON_0": "`->`", "MINUS": "`-`", "PLUS": "`+`", "STAR": "`*`", "SLASH": "`/`",
    "ELLIPSIS": "`...`", "COMPARE": "a comparison", "AT": "`@`", "VBAR": "`|`", "TILDE": "`~`",
    "RETURN": "`return`", "OVER": "`over`", "AS": "`as`", "FROM": "`from`", "$END": "end of file",
}
OPERATORS = {"+", "-", "*", "/", "//", "@", "**", "<", "<=", ">", ">=", "==", "!=", "and", "or", "not", "=", ","}


class SyntaxErrorReport(Exception):
    """A syntax error at a position; the compiler renders it as a diagnostic."""

    def __init__(self, message: str, span: ast.Span, help: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.help = help


def _describe_expected(expected: set[str]) -> str:
    names = sorted({TERMINAL_NAMES.get(t, f"`{t.lower()}`" if t.isalpha() else t) for t in expected})
    if len(names) > 6:
        return "an expression or statement"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def syntax_error(file: str, text: str, e: UnexpectedInput) -> SyntaxErrorReport:
    line, col = max(e.line, 1), max(e.column, 1)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        open_bracket = _unclosed(text)
        if open_bracket is not None:
            ch, bl, bc = open_bracket
            return SyntaxErrorReport(f"unexpected end of file: the `{ch}` on line {bl} is never closed",
                                     ast.Span(file, bl, bc, bl, bc + 1))
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        span = ast.Span(file, line, col, line, col + 1)
        return SyntaxErrorReport(f"unexpected end of file; expected {_describe_expected(set(e.expected))}", span)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        span = ast.Span(file, line, col, line, col + 1)
        return SyntaxErrorReport(f"unexpected character `{ch}`", span)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = ast.Span(file, line, col, tok.end_line or line, tok.end_column or col + len(str(tok)))
    shown = str(tok)
    prev, prev_span = _previous_token(text, tok.start_pos, file)
    if prev in KEYWORDS and shown in ("=", ",", ":"):
        # `param = x`: the keyword is where a name was meant.
        return SyntaxErrorReport(f"`{prev}` is a keyword and cannot name a value", prev_span,
                                 f"choose another name, such as `{prev}_`")
    if prev in OPERATORS and ("NAME" in e.expected or "NUMBER" in e.expected):
        return SyntaxErrorReport(f"expected an expression after `{prev}`, found `{shown}`", span)
    return SyntaxErrorReport(f"unexpected `{shown}`; expected {_describe_expected(set(e.expected))}", span)


def _previous_token(text: str, pos: int, file: str) -> tuple[Optional[str], Optional[ast.Span]]:
    """The token before `pos` (comments skipped), with its span."""
    before = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text[:pos]).rstrip()
    if not before:
        return None, None
    end = len(before)
    start = end - 1
    if before[start].isalnum() or before[start] == "_":  # a word: walk back over it (linear time)
        while start > 0 and (before[start - 1].isalnum() or before[start - 1] == "_"):
            start -= 1
    elif before[max(0, end - 2):end] in ("**", "<=", ">=", "==", "!=", "//"):
        start = end - 2
    token = before[start:end]
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return token, ast.Span(file, line, col, line, col + len(token))


def _code(text: str):
    """(character, line, column) of each character outside comments and strings."""
    line, col, in_comment, in_string = 1, 0, False, False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_string = line + 1, 0, False, False
        elif in_comment:
            continue
        elif ch == '"':
            in_string = not in_string
        elif not in_string:
            if ch == "#":
                in_comment = True
            else:
                yield ch, line, col


def _unclosed(text: str) -> Optional[tuple[str, int, int]]:
    """The innermost bracket left open at the end of the text, as (bracket, line, column)."""
    stack: list[tuple[str, int, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for ch, line, col in _code(text):
        if ch in "([{":
            stack.append((ch, line, col))
        elif ch in pairs and stack and stack[-1][0] == pairs[ch]:
            stack.pop()
    return stack[-1] if stack else None


MAX_NESTING = 100


def check_nesting(text: str, file: str) -> None:
    """Brackets nest at most MAX_NESTING deep: the tree walks are recursive."""
    depth = 0
    for ch, line, col in _code(text):
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise SyntaxErrorReport(f"brackets nest more than {MAX_NESTING} deep here",
                                        ast.Span(file, line, col, line, col + 1))
        elif ch in ")]}":
            depth -= 1
