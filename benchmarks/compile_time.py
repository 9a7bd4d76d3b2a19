"""Compile time of `archc compile examples/gpt2.arch` against torch.onnx.export of the same
model (transformers' GPT2Model, random weights), measured in one run on one machine.

    python benchmarks/compile_time.py [--runs 3] [--no-torch]

torch and transformers are optional (`pip install -e ".[parity]"`); without them only
archc is timed. Each figure is the median wall time of a fresh process (imports included),
since that is what a user waits for.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TORCH_EXPORT = """
import sys, time
t0 = time.perf_counter()
import torch
from transformers import GPT2Config, GPT2Model
model = GPT2Model(GPT2Config(use_cache=False)).eval()
tokens = torch.zeros((2, 32), dtype=torch.long)
t1 = time.perf_counter()
torch.onnx.export(model, (tokens,), sys.argv[1], dynamo=True, dynamic_shapes=None, external_data=False)
print(f"{time.perf_counter() - t1:.3f} {time.perf_counter() - t0:.3f}")
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "gpt2.onnx")
        archc = [sys.executable, "-m", "archlang.compiler.cli", "compile", str(REPO / "examples/gpt2.arch"), "-o", out]
        ours = [timed(archc)[0] for _ in range(args.runs)]
        print(f"archc compile examples/gpt2.arch: median {statistics.median(ours):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in ours)})")
        if args.no_torch:
            return
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            print("torch/transformers not installed: skipping torch.onnx.export (pip install -e '.[parity]')")
            return
        script = Path(tmp) / "export.py"
        script.write_text(TORCH_EXPORT)
        export_only, whole = [], []
        for _ in range(args.runs):
            _, stdout = timed([sys.executable, str(script), str(Path(tmp) / "torch.onnx")])
            e, w = map(float, stdout.split()[-2:])
            export_only.append(e)
            whole.append(w)
        print(f"torch.onnx.export(GPT2Model): median {statistics.median(export_only):.2f} s for the export call, "
              f"{statistics.median(whole):.2f} s with imports and model construction")
        print(f"ratio (torch export call / archc whole process): "
              f"{statistics.median(export_only) / statistics.median(ours):.1f}x")


if __name__ == "__main__":
    main()
