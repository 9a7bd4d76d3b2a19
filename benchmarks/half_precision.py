"""Half precision on onnxruntime's CPU provider: which kernels it has, and what f16 and bf16
models cost against f32, measured in one run on one machine.

    python benchmarks/half_precision.py [--repeats 20] [--threads 1] [--examples gpt2 resnet bert]

1. The probe: for each ONNX op the examples compile to (in f32, at -O2), whether the CPU
   provider registers a kernel for float16 and for bfloat16 at the model's opset (read from
   onnxruntime's own kernel registry, `get_all_opkernel_def`). This is why archc computes
   every half op in float32 between Casts (compiler/dtypes.py): bf16 kernels exist only for
   ops that move data, f16 kernels for few more.
2. Timing: the median of `--repeats` runs of each example in f32, f16 and bf16, interleaved
   (one run of each precision per round), and the ratio to f32.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import _pybind_state as ort_c

from archlang.backends.onnx_export import DEFAULT_OPSET, to_onnx
from archlang.backends.onnx_half_io import float32_io
from archlang.compiler.cli import _random_inputs
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.passes import optimize

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = {"gpt2": dict(vocab="1000", layers="4", embed="256", heads="4"), "resnet": {}, "bert": dict(layers="2")}


def cpu_kernels(opset: int) -> dict[tuple[str, str], set[str]]:
    """(domain, op) -> the tensor types some CPU kernel of that op takes at `opset`."""
    kernels: dict[tuple[str, str], set[str]] = {}
    for k in ort_c.get_all_opkernel_def():
        if k.provider != "CPUExecutionProvider":
            continue
        lo, hi = k.version_range
        if not lo <= opset <= hi and k.domain in ("", "ai.onnx"):
            continue
        types = kernels.setdefault((k.domain or "", k.op_name), set())
        for allowed in k.type_constraints.values():
            types.update(allowed)
    return kernels


def compiled(name: str, dtype: str):
    graph = load_graph(str(REPO / "examples" / f"{name}.arch"), SourceCache(), EXAMPLES[name], float_dtype=dtype)
    optimize(graph, 2)
    params = load_params(graph, None, seed=0)
    return graph, to_onnx(graph, params)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--examples", nargs="+", choices=sorted(EXAMPLES), default=sorted(EXAMPLES))
    args = ap.parse_args()

    kernels = cpu_kernels(DEFAULT_OPSET)
    ops = set()
    for name in EXAMPLES:
        ops |= {(n.domain or "", n.op_type) for n in compiled(name, "f32")[1].graph.node}
    print(f"onnxruntime {ort.__version__}, CPU provider kernels at opset {DEFAULT_OPSET}:")
    print(f"  {'op':32} float16  bfloat16")
    for domain, op in sorted(ops, key=lambda d_o: (d_o[0], d_o[1])):
        types = kernels.get((domain, op), set())
        label = f"{domain}:{op}" if domain else op
        print(f"  {label:32} {'yes' if 'tensor(float16)' in types else '-':8} "
              f"{'yes' if 'tensor(bfloat16)' in types else '-'}")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
    opts.log_severity_level = 3
    print(f"\nmedian of {args.repeats} interleaved runs, {args.threads} thread(s); ratio to f32:")
    for name in args.examples:
        runs = {}
        for dtype in ("f32", "f16", "bf16"):
            graph, model = compiled(name, dtype)
            sess = ort.InferenceSession(float32_io(model).SerializeToString(), opts, providers=["CPUExecutionProvider"])
            inputs = _random_inputs(graph, seed=1)
            casts = sum(n.op_type == "Cast" for n in model.graph.node)
            runs[dtype] = (lambda s=sess, i=inputs: s.run(None, i), casts, [])
            runs[dtype][0]()
        for _ in range(args.repeats):
            for fn, _, times in runs.values():
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        base = statistics.median(runs["f32"][2])
        line = "  ".join(f"{d} {statistics.median(t) * 1e3:7.2f} ms ({statistics.median(t) / base:4.2f}x, {c} Casts)"
                         for d, (_, c, t) in runs.items())
        print(f"  {name:8} {line}")


if __name__ == "__main__":
    np.random.seed(0)
    main()
