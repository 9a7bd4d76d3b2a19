"""`render(graph, path)`: an architecture diagram of a graph, in the format its file name
says (SVG drawn by archlang, the same SVG in an HTML page with a script of its own; DOT and
Mermaid text). `archc render` and `archlang.render` call it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from archlang.compiler.files import write_bytes
from archlang.compiler.ir import Graph

from .diagram import build_diagram

FORMATS = {".svg": "svg", ".html": "html", ".htm": "html", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid"}


def diagram_format(path: str) -> Optional[str]:
    """"svg", "html", "dot" or "mermaid" from the file's extension; None when unknown."""
    return FORMATS.get(Path(path).suffix.lower())


def render_text(graph: Graph, fmt: str, depth: int = 1, expand: Iterable[str] = (), sizes: bool = True,
                collapse_repeats: bool = True) -> str:
    """The diagram as text in `fmt` ("svg", "html", "dot" or "mermaid")."""
    d = build_diagram(graph, depth, expand, sizes, collapse_repeats)
    if fmt in ("svg", "html"):
        from .diagram_layout import layout
        if fmt == "html":
            from .diagram_html import to_html
            return to_html(d, layout(d))
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
