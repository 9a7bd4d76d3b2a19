"""The pipeline as plain function calls: load -> build -> (backends)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .build import DEFAULT_MAX_PARAMS, build_graph
from .diagnostics import SourceCache
from .ir import Graph
from .program import load_program
from .weights import initialize_all, load_weights


class UsageError(Exception):
    """A malformed command line (exit code 2)."""


def parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def load_graph(path: str, sources: SourceCache, sets: Optional[dict[str, str]] = None,
               text: Optional[str] = None, max_params: int = DEFAULT_MAX_PARAMS, float_dtype: str = "f32") -> Graph:
    """`float_dtype` (`--dtype`): every `f32` the program names is read as this dtype."""
    program = load_program(path, sources, text)
    return build_graph(program, sets, max_params, float_dtype)


def load_params(graph: Graph, weights: Optional[str], seed: int) -> dict[str, np.ndarray]:
    if weights:
        return load_weights(graph, weights)
    return initialize_all(graph, seed)


def optimize_graph(graph: Graph, level: int, passes: Optional[str] = None, disable: Sequence[str] = (),
                   explain: bool = False, after: Optional[Callable[[str, Graph], None]] = None) -> str:
    """Run the -O level's passes (or the comma-separated `passes`) on `graph`; returns the
    --explain report (empty unless `explain`)."""
    from .passes import PassContext, UnknownPass, optimize
    from .passes.trace import Tracer
    ctx = PassContext(tracer=Tracer(enabled=explain))
    only = [p.strip() for p in passes.split(",") if p.strip()] if passes is not None else None
    try:
        report = optimize(graph, level, only, disable, ctx, after)
    except UnknownPass as e:
        raise UsageError(str(e)) from None
    if not explain:
        return ""
    counts = report.counts()
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing changed"
    return ctx.tracer.report() + f"passes: {summary}\n"


def random_inputs(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    """Random inputs of the model's types (`archc run` without --inputs, `archc sweep`): open
    sizes are 2 for the first symbol (by name) and 8 for the others; integers stay inside
    every axis they index (`gather`) or scatter into, else in [0, 2)."""
    from archlang.backends.numpy_codegen import _np_dtype, eval_size
    rng = np.random.default_rng(seed)
    symbols = {s: 2 if i == 0 else 8 for i, s in enumerate(sorted(graph.symbols))}

    def size(s) -> int:
        return s.value if s.is_static else eval_size(s, symbols)

    def index_bound(v) -> int:
        sizes = [size(n.inputs[0].type.axis(n.attrs["axis"]).size) for n in graph.nodes
                 if n.op == "gather" and n.inputs[1] is v]
        sizes += [size(n.attrs["target"].size) for n in graph.nodes
                  if n.op.startswith("scatter_") and n.inputs[1] is v]
        return max(1, min(sizes or [2]))

    out = {}
    for name, v in graph.inputs:
        shape = [size(a.size) for a in v.type.axes]
        dtype = _np_dtype(v.type.dtype)
        if v.type.dtype == "bool":
            out[name] = rng.random(shape) < 0.5
        elif dtype.startswith(("int", "uint")):
            out[name] = rng.integers(0, index_bound(v), shape).astype(dtype)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    return out
