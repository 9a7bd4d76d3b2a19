"""archlang: a declarative model-graph compiler for named-axis neural network descriptions.

From Python (the compiler is imported on first use, so `import archlang` stays cheap):

    archlang.render("examples/gpt2.arch", "gpt2.svg", depth=2)   # .svg, .html, .dot or .mmd
    archlang.diagram("examples/unet.arch", depth=0)               # Jupyter draws it (_repr_svg_)
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Union

__version__ = "0.1.0"
__all__ = ["Diagram", "diagram", "render"]


def _graph(model, sets: Optional[dict], level: int):
    """The typed graph of `model`: a path to a .arch file (loaded, then optimised at -O
    `level`), or a `compiler.ir.Graph` used as it is."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph, optimize_graph
    graph = load_graph(os.fspath(model), SourceCache(), {k: str(v) for k, v in (sets or {}).items()})
    if level:
        optimize_graph(graph, level)
    return graph


class Diagram:
    """The architecture diagram of a model, as `archc render` draws it; in Jupyter the last
    expression of a cell that is a Diagram is drawn (`_repr_svg_`)."""

    def __init__(self, model, depth: int = 1, expand: Iterable[str] = (), sizes: bool = True,
                 unroll: bool = False, sets: Optional[dict] = None, level: int = 0) -> None:
        self.graph = _graph(model, sets, level)
        self.options = dict(depth=depth, expand=tuple(expand), sizes=sizes, collapse_repeats=not unroll)
        self._svg: Optional[str] = None

    def text(self, fmt: str) -> str:
        """The diagram in `fmt`: "svg", "html", "dot" or "mermaid"."""
        from archlang.backends.render import render_text
        return render_text(self.graph, fmt, **self.options)

    @property
    def svg(self) -> str:
        if self._svg is None:
            self._svg = self.text("svg")
        return self._svg

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, out: Union[str, os.PathLike]) -> None:
        """Write the diagram to `out`, the format from its extension (all or nothing)."""
        from archlang.backends.render import render as write
        write(self.graph, os.fspath(out), **self.options)

    def __repr__(self) -> str:
        return f"<archlang.Diagram of {self.graph.name}>"


def diagram(model, **options) -> Diagram:
    """`Diagram(model, **options)`: `model` a .arch path or a graph; options `depth` (block
    levels open, 1), `expand` (block names or paths to open), `sizes` (axis sizes on wires,
    True), `unroll` (every copy of a repeat, False), `sets` ({"layers": 48}), `level` (-O)."""
    return Diagram(model, **options)


def render(model, out: Union[str, os.PathLike], **options) -> None:
    """Write the diagram of `model` (a .arch path or a graph) to `out`: .svg, .html, .dot or
    .mmd, as `archc render` does; options as `diagram`'s."""
    Diagram(model, **options).save(out)
