"""Which ONNX form of each fused op onnxruntime's CPU provider runs fastest, on whole models.

    python benchmarks/lowering_forms.py [--batches 1,8] [--iters 10] [--threads 2]

Each fused op has one switch that picks its ONNX lowering (the default is the fastest we
measured; the figures are in the README and beside each switch). This compiles the same
-O2 graph with each alternative and times them on onnxruntime in turn, one run of each
per round, so that other load on the machine falls on every form alike:

- attention: the opset-23 `Attention` op vs MatMul/Softmax/MatMul (gpt2, bert, llama);
- linear: MatMul + Add vs Gemm on a 2-D view (gpt2, bert);
- residual + norm: Add + LayerNormalization vs com.microsoft SkipLayerNormalization (gpt2, bert);
- gated MLP: two MatMuls vs one on the concatenated weights (llama).

Random weights; sequence 128; ORT_ENABLE_ALL; one SessionOptions object.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEQ = 128

# form name -> (module, attribute, value); the first of each list is the default
SWITCHES = {
    "attention": [("standard", "archlang.backends.onnx_export", "OnnxEmitter.attention_form", "standard"),
                  ("matmul chain", "archlang.backends.onnx_export", "OnnxEmitter.attention_form", "matmul")],
    "linear": [("MatMul+Add", "archlang.compiler.ops.linear", "ONNX_FORM", "matmul-add"),
               ("Gemm 2-D", "archlang.compiler.ops.linear", "ONNX_FORM", "gemm")],
    "residual norm": [("Add+LayerNorm", "archlang.compiler.ops.add_norm", "ONNX_SKIP_NORM", False),
                      ("SkipLayerNorm", "archlang.compiler.ops.add_norm", "ONNX_SKIP_NORM", True)],
    "gated MLP": [("two MatMuls", "archlang.compiler.ops.gated", "ONNX_CONCAT", False),
                  ("concat MatMul", "archlang.compiler.ops.gated", "ONNX_CONCAT", True)],
}
MODELS = {"attention": ["gpt2", "bert", "llama"], "linear": ["gpt2", "bert"], "residual norm": ["gpt2", "bert"],
          "gated MLP": ["llama"]}


@contextlib.contextmanager
def switched(module: str, attr: str, value):
    import importlib
    obj = importlib.import_module(module)
    *path, name = attr.split(".")
    for p in path:
        obj = getattr(obj, p)
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def sessions_for(model: str, forms: list, threads: int) -> tuple[dict, object]:
    import onnxruntime as ort
    from archlang.backends.onnx_export import to_onnx
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph, load_params
    from archlang.compiler.passes import optimize
    graph = load_graph(str(REPO / "examples" / f"{model}.arch"), SourceCache(), {})
    optimize(graph, 2)
    params = load_params(graph, None, seed=0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    sessions = {}
    for label, module, attr, value in forms:
        with switched(module, attr, value):
            proto = to_onnx(graph, params).SerializeToString()
        sessions[label] = ort.InferenceSession(proto, opts, providers=["CPUExecutionProvider"])
    return sessions, graph


def feeds_for(graph, batch: int) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for name, v in graph.inputs:
        shape = [a.size.value if a.size.is_static else (batch if a.name == "batch" else SEQ) for a in v.type.axes]
        if v.type.dtype == "i64":
            feeds[name] = rng.integers(0, 100, shape).astype(np.int64)
        elif v.type.dtype == "bool":
            feeds[name] = np.ones(shape, bool)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    if "attention_mask" in feeds:
        feeds["attention_mask"] = np.ones_like(feeds["attention_mask"])
    return feeds


def timed_in_turn(sessions: dict, feeds: dict, iters: int) -> dict:
    outs = {k: s.run(None, feeds)[0] for k, s in sessions.items()}  # warm-up, and the outputs
    first = next(iter(outs.values()))
    for k, o in outs.items():
        assert np.allclose(o, first, rtol=1e-4, atol=1e-4), f"{k} disagrees with the default form"
    times = {k: [] for k in sessions}
    for _ in range(iters):
        for k, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", default=",".join(SWITCHES), help="which fused ops (comma-separated)")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"| fused op | model | batch | {' | '.join(['forms (ms, median of %d; ratio to the default)' % args.iters])} |")
    print("|---|---|---|---|")
    for op in args.ops.split(","):
        forms = SWITCHES[op]
        for model in MODELS[op]:
            sessions, graph = sessions_for(model, forms, args.threads)
            for batch in batches:
                t = timed_in_turn(sessions, feeds_for(graph, batch), args.iters)
                default = t[forms[0][0]]
                cells = ", ".join(f"{k} {v * 1000:.1f} ({v / default:.2f}x)" for k, v in t.items())
                print(f"| {op} | {model} | {batch} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
