"""Drawing time of a fully expanded graph of about 5,000 IR nodes: GPT-2 (examples/gpt2.arch)
with enough layers, every block open (--depth 99) and every copy of the repeat drawn
(--unroll), the way Netron would have to show it.

    python benchmarks/diagram.py [--layers 128] [--runs 3]

Each phase (diagram model, layout, SVG text) is timed in-process, best of `--runs`, with the
cyclic garbage collector off as `render_text` has it, against the baseline measured in the
same run: compiling the same model to its typed IR (`load_graph`: parse, bind and
type-check), which every `archc render` does first. The issue's bar is under 2 s for the
drawing; the ratio says what drawing costs next to compiling on whatever machine runs it.
Last, the whole drawing again with the collector on, what it cost before `no_cyclic_gc`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from archlang.backends.diagram import build_diagram
from archlang.backends.diagram_layout import layout
from archlang.backends.diagram_tidy import tidy
from archlang.backends.render import no_cyclic_gc
from archlang.backends.svg import to_svg
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph

GPT2 = Path(__file__).resolve().parent.parent / "examples" / "gpt2.arch"


def best(runs: int, f):
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sets = {"layers": str(args.layers)}
    compile_s, graph = best(args.runs, lambda: load_graph(str(GPT2), SourceCache(), sets))
    with no_cyclic_gc():  # as render_text draws
        model_s, d = best(args.runs, lambda: tidy(build_diagram(graph, depth=99, collapse_repeats=False)))
        layout_s, lay = best(args.runs, lambda: layout(d))
        svg_s, svg = best(args.runs, lambda: to_svg(d, lay))
    total = model_s + layout_s + svg_s
    gc_on_s, _ = best(args.runs, lambda: to_svg(*(lambda d: (d, layout(d)))(
        tidy(build_diagram(graph, depth=99, collapse_repeats=False)))))
    print(f"GPT-2, {args.layers} layers: {len(graph.nodes):,} IR nodes -> {len(d.boxes):,} boxes, "
          f"{len(d.groups):,} fences, {len(d.wires):,} wires; SVG {len(svg) / 1e6:.1f} MB, "
          f"{lay.width:,.0f} x {lay.height:,.0f} px")
    print(f"compile (baseline) {compile_s:6.3f} s")
    for name, s in (("diagram model", model_s), ("layout", layout_s), ("svg text", svg_s)):
        print(f"{name:17} {s:6.3f} s")
    print(f"drawing in all    {total:6.3f} s  ({total / compile_s:.2f} x compile; bar: under 2 s: "
          f"{'yes' if total < 2 else 'NO'})")
    print(f"the same with the cyclic collector on: {gc_on_s:6.3f} s ({gc_on_s / total:.2f} x)")


if __name__ == "__main__":
    main()
