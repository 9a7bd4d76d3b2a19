"""A mixture-of-experts layer on onnxruntime: archc -O0 (each token gathers its k experts'
weights), archc -O2 (dispatch-experts: tokens grouped by expert, one MatMul per expert and
weight, the SwiGLU experts one `expert_mlp`; also each layer dispatched apart, and the
"scatter" lowering) and a PyTorch reference layer exported with torch.onnx.export, same sizes and weights, one run.

    python benchmarks/moe.py [--tokens 128,1024] [--experts 8] [--k 2] [--embed 512]
                             [--hidden 1408] [--iters 20] [--threads 2] [--o0-max-gb 3]
                             [--opset 23]

examples/moe.arch compiled with `--set expert=E --set k=K --set embed=D --set hidden=H` binds
the state_dict() of tests/parity/moe_reference.py's `TorchMoE` (Mixtral's dispatch loop,
SwiGLU experts, seeded random weights); the torch export of that module is dynamic in batch
and sequence. Inputs are [1, tokens, embed]. Latency: CPUExecutionProvider, ORT_ENABLE_ALL,
--threads intra-op threads, median of --iters runs after a warm-up, the variants timed in
turn (round-robin) so that load from elsewhere falls on all alike. -O0 materialises
tokens x k x expert weights ([1, T, k, hidden, embed] per projection); it is skipped where
one such tensor would pass --o0-max-gb. Every output is compared with torch's own.
torch is needed (`pip install -e ".[parity]"`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "parity"))
sys.path.insert(0, str(REPO / "benchmarks"))


def export_torch(model, embed: int, path: str) -> str:
    """torch.onnx.export of the reference, dynamic in batch and sequence; the dynamo exporter,
    else the TorchScript one. Returns which one wrote the file."""
    import torch
    example = (torch.randn(2, 16, embed),)
    try:
        d = torch.export.Dim.DYNAMIC
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(model, example, path, dynamo=True, dynamic_shapes=({0: d, 1: d},),
                              external_data=False)
        return "dynamo"
    except Exception as e:  # noqa: BLE001  (report and fall back)
        print(f"# dynamo export failed ({type(e).__name__}); TorchScript export instead", file=sys.stderr)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(model, example, path, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}})
        return "torchscript"


def archc(args, weights: str, level: int, out: str, form: str = "sort", whole_mlp: bool = True) -> None:
    """`archc compile` in-process. `form`: the experts' ONNX lowering (compiler/ops/expert.py);
    `whole_mlp=False`: dispatch each expert layer apart (no `expert_mlp`)."""
    from archlang.compiler import cli
    from archlang.compiler.ops import expert
    from archlang.compiler.passes.rules import expert_dispatch
    rules = expert_dispatch.RULES
    expert.ONNX_FORM = form
    if not whole_mlp:
        expert_dispatch.RULES = [r for r in rules if r.name != "expert-mlp"]
    sets = [f"{k}={v}" for k, v in (("expert", args.experts), ("k", args.k), ("embed", args.embed),
                                    ("hidden", args.hidden))]
    argv = ["compile", str(REPO / "examples" / "moe.arch"), "-o", out, "--weights", weights, f"-O{level}",
            "--opset", str(args.opset)] + [x for s in sets for x in ("--set", s)]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as said:
            code = cli.main(argv)
    finally:
        expert.ONNX_FORM, expert_dispatch.RULES = "sort", rules
    if code != 0:
        raise SystemExit(f"archc {' '.join(argv)} failed:\n{said.getvalue()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", default="128,1024")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--embed", type=int, default=512)
    p.add_argument("--hidden", type=int, default=1408)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--o0-max-gb", type=float, default=3.0)
    p.add_argument("--opset", type=int, default=23)
    args = p.parse_args()

    import torch
    from moe_reference import TorchMoE

    torch.set_num_threads(args.threads)
    model = TorchMoE(args.experts, args.k, args.embed, args.hidden).eval()
    with tempfile.TemporaryDirectory(prefix="moe_bench_") as folder:
        measure(args, model, Path(folder))


def measure(args, model, tmp: Path) -> None:
    """Compile and export into `tmp`, then time every variant at each token count."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from parity_helpers import save_state_dict
    from passes import interleaved_latency, session_options

    weights = str(tmp / "moe.safetensors")
    save_state_dict(model, Path(weights))
    files = {"archc -O0 (gather)": str(tmp / "O0.onnx"),
             "archc -O2 (expert_mlp)": str(tmp / "O2.onnx"),
             "archc -O2, expert_linear per layer": str(tmp / "O2_layers.onnx"),
             "archc -O2, scatter form": str(tmp / "O2_scatter.onnx"),
             "torch export": str(tmp / "torch.onnx")}
    archc(args, weights, 0, files["archc -O0 (gather)"])
    archc(args, weights, 2, files["archc -O2 (expert_mlp)"])
    archc(args, weights, 2, files["archc -O2, expert_linear per layer"], whole_mlp=False)
    archc(args, weights, 2, files["archc -O2, scatter form"], form="scatter")
    exporter = export_torch(model, args.embed, files["torch export"])
    opts = session_options(args.threads)
    sessions = {k: ort.InferenceSession(f, opts, providers=["CPUExecutionProvider"]) for k, f in files.items()}

    print(f"# MoE layer: {args.experts} experts, k={args.k}, embed {args.embed}, hidden {args.hidden} (SwiGLU); "
          f"onnxruntime {ort.__version__}, torch {torch.__version__} ({exporter} export), {args.threads} threads, "
          f"median of {args.iters} interleaved runs")
    print("| tokens | variant | ms | / torch export | / archc -O0 | max abs vs torch eager |")
    print("|---|---|---|---|---|---|")
    for tokens in (int(t) for t in args.tokens.split(",")):
        x = np.random.default_rng(tokens).standard_normal((1, tokens, args.embed)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        gathered_gb = tokens * args.k * args.hidden * args.embed * 4 / 2**30
        run = {k: s for k, s in sessions.items() if "-O0" not in k or gathered_gb <= args.o0_max_gb}
        times, outs = interleaved_latency(run, [x], warmup=2, iters=args.iters)
        base, o0 = times["torch export"], times.get("archc -O0 (gather)")
        for k in files:
            if k not in times:
                print(f"| {tokens} | {k} | skipped: {gathered_gb:.1f} GB per gathered weight | | | |")
                continue
            error = float(np.max(np.abs(outs[k] - want)))
            vs_o0 = f"{times[k] / o0:.3f}x" if o0 else "-"
            print(f"| {tokens} | {k} | {times[k] * 1e3:.1f} | {times[k] / base:.2f}x | {vs_o0} | {error:.1e} |",
                  flush=True)

if __name__ == "__main__":
    main()
