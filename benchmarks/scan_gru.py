"""Run time of examples/rnn.arch (a bidirectional GRU written with `scan`) on onnxruntime,
against torch.nn.GRU with the same weights, measured in one run on one machine.

    python benchmarks/scan_gru.py [--batch 8] [--seq 32 256] [--repeats 50]

Each figure is the median of `--repeats` calls after warm-up, single-threaded on both
sides (the recurrence is sequential; this measures the per-step overhead of an ONNX Scan
against torch's fused GRU kernel). The ratio is onnxruntime's time over torch's. torch is
optional (`pip install -e ".[parity]"`); without it only onnxruntime and the NumPy
reference are timed.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import compile_to_file
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params

REPO = Path(__file__).resolve().parent.parent


def median_seconds(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None

    graph = load_graph(str(REPO / "examples" / "rnn.arch"), SourceCache(), {})
    with tempfile.TemporaryDirectory() as tmp:
        if torch is not None:
            from safetensors.torch import save_file
            torch.set_num_threads(1)
            torch.manual_seed(0)
            gru = torch.nn.GRU(16, 32, batch_first=True, bidirectional=True).eval()
            weights = str(Path(tmp) / "gru.safetensors")
            save_file({k: v.contiguous() for k, v in gru.state_dict().items()}, weights)
        else:
            weights = None
        params = load_params(graph, weights, seed=0)
        path = str(Path(tmp) / "rnn.onnx")
        compile_to_file(graph, params, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    print(f"bidirectional GRU (embed 16, hidden 32), batch {args.batch}, median of {args.repeats}, 1 thread")
    print(f"{'seq':>6} {'onnxruntime':>12} {'numpy ref':>12} {'torch':>12} {'ort/torch':>10}")
    rng = np.random.default_rng(0)
    for seq in args.seq:
        x = rng.standard_normal((args.batch, seq, 16)).astype(np.float32)
        t_ort = median_seconds(lambda: sess.run(None, {"x": x}), args.repeats)
        t_np = median_seconds(lambda: run_graph(graph, params, {"x": x}), max(3, args.repeats // 10))
        line = f"{seq:>6} {t_ort * 1e3:>10.2f}ms {t_np * 1e3:>10.2f}ms"
        if torch is not None:
            xt = torch.from_numpy(x)

            def run_torch():
                with torch.no_grad():
                    gru(xt)
            t_torch = median_seconds(run_torch, args.repeats)
            line += f" {t_torch * 1e3:>10.2f}ms {t_ort / t_torch:>9.2f}x"
        print(line)


if __name__ == "__main__":
    main()
