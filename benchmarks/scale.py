"""Compile time and peak memory of GPT-2-XL-sized models (1.6B parameters at 48 layers)
over depth: examples/gpt2.arch with embed 1600 and 25 heads, at 12, 24 and 48 layers.

    python benchmarks/scale.py [--layers 12,24,48] [--weights] [--runs 1]

Each compile is a fresh `archc compile` process; its wall time, CPU time (user + sys: what
the compile costs, less sensitive than wall time to other load on a shared machine) and
peak resident memory (the child's ru_maxrss) are reported against the bytes of its weights. Without
`--weights` the weights are drawn by archc's initializers; with it, transformers'
GPT2Model of the same size (random weights, the parity extra) is saved as safetensors
first and compiled twice: copied into the model's external data, and with
`--weights-link` (the ONNX refers to the tensors inside the safetensors file).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GPT2 = REPO / "examples" / "gpt2.arch"
XL = ["--set", "embed=1600", "--set", "heads=25"]

# One child per wrapper, so RUSAGE_CHILDREN's peak is that compile's alone.
MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak": usage.ru_maxrss * 1024,
                  "code": done.returncode, "err": done.stderr[-1500:]}))
"""


def measure(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    if result["code"] != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result['err']}")
    return result


def save_reference(layers: int, path: Path) -> int:
    """transformers' GPT2Model of this size, random weights, as safetensors; returns its bytes."""
    import torch
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2Model
    torch.manual_seed(0)
    config = GPT2Config(n_embd=1600, n_head=25, n_layer=layers, use_cache=False)
    with torch.no_grad():
        model = GPT2Model(config).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith(".attn.bias")}
    save_file(state, str(path))
    return sum(v.numel() * v.element_size() for v in state.values())


def weight_bytes(layers: int) -> int:
    embed, vocab, ctx = 1600, 50257, 1024
    per_layer = 12 * embed * embed + 13 * embed
    return 4 * (vocab * embed + ctx * embed + layers * per_layer + 2 * embed)


def row(label: str, layers: int, runs: list[dict], nbytes: int) -> str:
    wall = statistics.median(r["wall"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    peak = max(r["peak"] for r in runs)
    return (f"| {label} | {layers} | {nbytes / 4e9:.2f}B | {wall:.2f} s | {cpu:.2f} s | {peak / 2**30:.2f} GiB | "
            f"{peak / nbytes:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="12,24,48")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--weights", action="store_true", help="also compile transformers' weights (needs torch)")
    args = ap.parse_args()
    archc = [sys.executable, "-m", "archlang.compiler.cli", "compile", str(GPT2), *XL]
    print(f"# archc compile of GPT-2-XL-sized models ({os.cpu_count()} cores)\n")
    print("| weights | layers | parameters | wall (median) | CPU, user + sys | peak RSS | peak / weight bytes |")
    print("|---|---|---|---|---|---|---|")
    for layers in [int(x) for x in args.layers.split(",")]:
        depth = ["--set", f"layers={layers}"]
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "model.onnx")
            runs = [measure(archc + depth + ["-o", clear(out)]) for _ in range(args.runs)]
            print(row("drawn by archc", layers, runs, weight_bytes(layers)), flush=True)
            if args.weights:
                stored = Path(tmp) / "gpt2.safetensors"
                nbytes = save_reference(layers, stored)
                runs = [measure(archc + depth + ["--weights", str(stored), "-o", clear(out)]) for _ in range(args.runs)]
                print(row("safetensors, copied", layers, runs, nbytes), flush=True)
                runs = [measure(archc + depth + ["--weights", str(stored), "--weights-link", "-o", clear(out)])
                        for _ in range(args.runs)]
                print(row("safetensors, `--weights-link`", layers, runs, nbytes), flush=True)


def clear(out: str) -> str:
    """`out` with the previous compile's files removed first, outside the timing: replacing a
    6 GB file makes the kernel free its pages inside the compile's rename (seconds, measured:
    the 5.7 s once reported for --weights-link at 48 layers were mostly that)."""
    for path in (Path(out), Path(out + ".data")):
        path.unlink(missing_ok=True)
    return out

if __name__ == "__main__":
    main()
