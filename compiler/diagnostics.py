"""Diagnostics are data: an error kind, a message, the span it points at, notes and help.

Rendering is separate (`render`), in the `file:line:col: error: message` form with the
source line and a caret underline, so editors and people both read it.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from archlang.grammar.ast import Span


@dataclass
class Diagnostic:
    message: str
    span: Optional[Span]
    severity: str = "error"  # "error" | "warning"
    notes: list[tuple[str, Optional[Span]]] = field(default_factory=list)
    help: Optional[str] = None

    def note(self, text: str, span: Optional[Span] = None) -> "Diagnostic":
        self.notes.append((text, span))
        return self


class CompileError(Exception):
    """Raised with one or more diagnostics; the CLI renders them and exits with 1."""

    def __init__(self, *diagnostics: Diagnostic):
        super().__init__(diagnostics[0].message if diagnostics else "error")
        self.diagnostics = list(diagnostics)


def error(message: str, span: Optional[Span], help: Optional[str] = None) -> CompileError:
    return CompileError(Diagnostic(message, span, help=help))


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    """At most four close names, best first, as a help line."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=4, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"


class SourceCache:
    """Source text by file name, so a diagnostic can show the offending line."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, file: str, text: str) -> None:
        self.texts[file] = text

    def line(self, file: str, line: int) -> Optional[str]:
        text = self.texts.get(file)
        if text is None:
            try:
                text = Path(file).read_text()
            except OSError:
                return None
            self.texts[file] = text
        lines = text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else None


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _snippet(span: Span, sources: SourceCache, width: int) -> list[str]:
    src = sources.line(span.file, span.line)
    if src is None:
        return []
    end = span.end_column if span.end_line == span.line else len(src) + 1
    carets = "^" * max(1, end - span.column)
    pad = " " * (span.column - 1)
    return [f" {span.line:>{width}} | {src}", f" {' ' * width} | {pad}{carets}"]


def render(diag: Diagnostic, sources: SourceCache) -> str:
    where = f"{diag.span}: " if diag.span else ""
    out = [f"{where}{diag.severity}: {diag.message}"]
    spans = [diag.span] + [s for _, s in diag.notes]
    width = max((len(str(s.line)) for s in spans if s is not None), default=1)  # one gutter for all snippets
    if diag.span:
        out += _snippet(diag.span, sources, width)
    for text, span in diag.notes:
        if span is not None:
            out.append(f"{span}: note: {text}")
            out += _snippet(span, sources, width)
        else:
            out.append(f"  = note: {text}")
    if diag.help:
        out.append(f"  = help: {diag.help}")
    return "\n".join(out)
