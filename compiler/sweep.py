"""`archc sweep`: compile every variant of a grid of sizes and constants and measure each.

A variant is one `--set` assignment from the grid's cartesian product (on top of the fixed
`--set` values). For each: parameters and multiply-accumulates (compiler/summary.py), peak
activation memory, the in-process compile time, and onnxruntime's latency. A variant the
compiler rejects (an axis that no longer divides, say) keeps its first diagnostic and the
sweep goes on.
"""
from __future__ import annotations

import csv
import io
import itertools
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .axes import DTYPES
from .diagnostics import CompileError, SourceCache, render
from .ir import Graph
from .summary import evaluate, human_size, summarize

WEIGHTS = {"param", "array", "const"}  # ops whose results are stored weights, not activations
COLUMNS = ("params", "MACs", "activations MB", "compile s", "latency ms")


@dataclass
class Variant:
    sets: dict[str, str]                 # this variant's grid values
    params: Optional[int] = None
    macs: Optional[int] = None
    macs_formula: str = ""               # while a size is left open
    activation_bytes: Optional[int] = None
    compile_s: Optional[float] = None
    latency_ms: Optional[float] = None
    error: str = ""                      # the compiler's first diagnostic, when it refused
    notes: list[str] = field(default_factory=list)


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """`["layers=4,8,12", "embed=256,512"]` -> {"layers": [...], "embed": [...]}."""
    from .driver import UsageError
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not choices:
            raise UsageError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        if name.strip() in grid:
            raise UsageError(f"--grid names `{name.strip()}` twice")
        grid[name.strip()] = choices
    return grid


def variants(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def peak_activation_bytes(graph: Graph) -> Optional[int]:
    """The most bytes of values alive at once when the nodes run in the IR's order (inputs
    included; parameters and constants not; a `rename` is a view of its operand, not a
    copy). A lower bound on what a runtime holds: it may keep more, never less. None while
    a size is symbolic."""
    root: dict[int, int] = {}  # a renamed value -> the value holding its bytes
    for node in graph.nodes:
        if node.op == "rename":
            root[node.outputs[0].id] = root.get(node.inputs[0].id, node.inputs[0].id)
    last_use: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last_use[root.get(v.id, v.id)] = i
    for _, v in graph.outputs:
        last_use[root.get(v.id, v.id)] = len(graph.nodes)

    def nbytes(t) -> Optional[int]:
        n = 1
        for a in t.axes:
            size = evaluate(a.size, {})
            if size is None:
                return None
            n *= size
        return n * (2 if t.dtype == "bf16" else np.dtype(DTYPES[t.dtype]).itemsize)

    held: dict[int, int] = {}  # live value id -> bytes
    made = [v for _, v in graph.inputs] + [v for node in graph.nodes if node.op not in WEIGHTS | {"rename"}
                                           for v in node.outputs]
    sizes = {v.id: nbytes(v.type) for v in made}
    if any(b is None for b in sizes.values()):
        return None
    held.update((v.id, sizes[v.id]) for _, v in graph.inputs)
    peak = sum(held.values())
    for i, node in enumerate(graph.nodes):
        for v in node.outputs:
            if v.id in sizes and v.id in last_use:
                held[v.id] = sizes[v.id]
        peak = max(peak, sum(held.values()))
        for v in node.inputs:
            r = root.get(v.id, v.id)
            if last_use.get(r) == i:
                held.pop(r, None)
    return peak


def measure_latency(model_bytes: bytes, feeds: dict[str, np.ndarray], runs: int) -> float:
    """Median milliseconds of `runs` onnxruntime runs after one warm-up."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run_variant(path: str, sets: dict[str, str], fixed: dict[str, str], level: int, latency_runs: int,
                sources: SourceCache, passes: Optional[str] = None, disable: Sequence[str] = ()) -> Variant:
    from .driver import load_graph, optimize_graph
    v = Variant(dict(sets))
    start = time.perf_counter()
    try:
        graph = load_graph(path, sources, {**fixed, **sets})
        optimize_graph(graph, level, passes, disable)
    except CompileError as e:
        v.error = render(e.diagnostics[0], sources).splitlines()[0]
        return v
    built = time.perf_counter() - start
    summary = summarize(graph, depth=0)
    v.params, v.macs = summary.total.params, evaluate(summary.total.macs, {})
    v.macs_formula = human_size(summary.total.macs)
    v.activation_bytes = peak_activation_bytes(graph)
    if graph.symbols:
        v.notes.append(f"sizes {', '.join(sorted(graph.symbols))} left open: give them with --set to measure "
                       "MACs, activations and latency")
    from archlang.backends.onnx_export import to_onnx
    from .weights import initialize_all
    params = initialize_all(graph, seed=0)
    start = time.perf_counter()
    model = to_onnx(graph, params)
    # Drawing random weights is not compiling: the time is the build, the passes and the lowering.
    v.compile_s = built + time.perf_counter() - start
    if latency_runs and not graph.symbols:
        from .driver import random_inputs
        v.latency_ms = measure_latency(model.SerializeToString(), random_inputs(graph, 0), latency_runs)
    return v


def sweep(path: str, grid: dict[str, list[str]], fixed: dict[str, str], level: int = 2, latency_runs: int = 10,
          progress: Optional[Callable[[int, int, dict[str, str]], None]] = None, passes: Optional[str] = None,
          disable: Sequence[str] = ()) -> list[Variant]:
    """Every variant of `grid` (on top of the `fixed` --set values), compiled at -O`level`."""
    from archlang.backends import onnx_export  # noqa: F401  (imported once, outside every variant's time)
    sources = SourceCache()
    out = []
    todo = variants(grid)
    for i, sets in enumerate(todo):
        if progress:
            progress(i, len(todo), sets)
        out.append(run_variant(path, sets, fixed, level, latency_runs, sources, passes, disable))
    if progress:
        progress(len(todo), len(todo), {})
    return out


def _cells(v: Variant) -> list[str]:
    if v.error:
        return ["", "", "", "", ""]
    return [f"{v.params:,}", f"{v.macs:,}" if v.macs is not None else v.macs_formula,
            f"{v.activation_bytes / 1e6:.1f}" if v.activation_bytes is not None else "open",
            f"{v.compile_s:.2f}", f"{v.latency_ms:.2f}" if v.latency_ms is not None else "-"]


def format_table(grid: dict[str, list[str]], results: list[Variant]) -> str:
    header = list(grid) + list(COLUMNS) + ["error"]
    rows = [header] + [[v.sets[n] for n in grid] + _cells(v) + [v.error] for v in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else "")
             for r in rows]
    notes = sorted({n for v in results for n in v.notes})
    return "\n".join(lines + notes) + "\n"


def to_csv(grid: dict[str, list[str]], results: list[Variant]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(grid) + ["params", "macs", "activation_bytes", "compile_s", "latency_ms", "error"])
    for v in results:
        writer.writerow([v.sets[n] for n in grid] + [
            "" if x is None else x for x in (v.params, v.macs, v.activation_bytes,
                                              None if v.compile_s is None else round(v.compile_s, 4),
                                              None if v.latency_ms is None else round(v.latency_ms, 4))] + [v.error])
    return buf.getvalue()
