"""`render(graph, path)`: an architecture diagram of a graph, in the format its file name
says (SVG drawn by archlang, the same SVG in an HTML page with a script of its own; DOT and
Mermaid text). `archc render` and `archlang.render` call it."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

from archlang.compiler.files import write_bytes
from archlang.compiler.ir import Graph

from .diagram import build_diagram
from .diagram_html import toggle_states
from .diagram_tidy import tidy

MAX_STATES = 16  # drawings an HTML page holds: the one asked for, and with blocks closed
MAX_BOXES = 12000  # ... at most this many boxes in all of them
MAX_HELD_BYTES = 500_000  # ... and this much SVG besides the one shown first

FORMATS = {".svg": "svg", ".html": "html", ".htm": "html", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid"}


def diagram_format(path: str) -> Optional[str]:
    """"svg", "html", "dot" or "mermaid" from the file's extension; None when unknown."""
    return FORMATS.get(Path(path).suffix.lower())


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while: a layout allocates hundreds of thousands
    of small dicts and tuples, none of them garbage cycles, and the collector's rescans of
    them took a third of the time of a 5,000-node drawing (benchmarks/diagram.py)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def render_text(graph: Graph, fmt: str, depth: int = 1, expand: Iterable[str] = (), sizes: bool = True,
                collapse_repeats: bool = True) -> str:
    """The diagram as text in `fmt` ("svg", "html", "dot" or "mermaid")."""
    with no_cyclic_gc():
        return _render_text(graph, fmt, depth, expand, sizes, collapse_repeats)


def _render_text(graph: Graph, fmt: str, depth: int, expand: Iterable[str], sizes: bool,
                 collapse_repeats: bool) -> str:
    d = tidy(build_diagram(graph, depth, expand, sizes, collapse_repeats))
    if fmt in ("svg", "html"):
        from .diagram_layout import layout
        if fmt == "html":
            from .diagram_html import to_html
            from .svg import to_svg
            variants, boxes, held = [], len(d.boxes), 0
            for state in toggle_states(d, MAX_STATES - 1):
                close, reopen = ({t[1:] for t in state if t[0] == sign} for sign in "-+")
                v = tidy(build_diagram(graph, depth, expand, sizes, collapse_repeats, close, reopen))
                boxes += len(v.boxes)
                if boxes > MAX_BOXES:
                    break
                text = to_svg(v, layout(v))
                held += len(text)
                if held > MAX_HELD_BYTES:
                    break
                variants.append((state, text))
            return to_html(d, layout(d), variants)
        from .svg import to_svg
        return to_svg(d, layout(d))
    from .diagram_text import to_dot, to_mermaid
    if fmt == "dot":
        return to_dot(d)
    if fmt == "mermaid":
        return to_mermaid(d)
    raise ValueError(f"unknown diagram format {fmt!r}; formats: svg, html, dot, mermaid")


def render(graph: Graph, path: str, depth: int = 1, expand: Iterable[str] = (), sizes: bool = True,
           collapse_repeats: bool = True) -> None:
    """Write the diagram of `graph` to `path` (all or nothing), format from the extension."""
    fmt = diagram_format(path)
    if fmt is None:
        raise ValueError(f"cannot tell the diagram format of {path}: use {', '.join(sorted(FORMATS))}")
    write_bytes(path, render_text(graph, fmt, depth, expand, sizes, collapse_repeats).encode())
