"""archc -O0 / -O2 against torch.onnx.export: compile time, onnxruntime latency and graph
counts, for the same models with the same random weights, measured in one run on one machine.

    python benchmarks/passes.py [--models gpt2,bert,vit,resnet50] [--runs 3] [--iters 20]
                                [--batches 1,8] [--threads 2] [--quick]

Each reference (transformers' GPT2Model / BertModel at their default configs, timm's
vit_base_patch16_224 / resnet50) is built with seeded random weights and its state_dict()
saved with safetensors; `archc compile --weights` binds that file and the torch export
loads it, so every ONNX file computes the same function (the max abs difference from
torch's own output is printed as a check; archc's gpt2/bert output is the last hidden state).

1. Compile time: the whole `archc compile ... -O2` process (wall, and its CPU time, which
   other load on a shared machine inflates less) and the in-process compile
   (`archlang.compiler.cli.main`, after a warm-up), medians of --runs, against the
   `torch.onnx.export(..., dynamo=True)` call alone in a fresh process (imports and model
   construction reported apart).
2. onnxruntime latency (CPUExecutionProvider, ORT_ENABLE_ALL, intra-op --threads, inter-op 1,
   one SessionOptions for every session): median of --iters runs after warm-up, the variants
   timed in turn (one run of each, round-robin) so that other load hits all alike; sequence 128
   for the text models and 224x224 images for the vision ones, for archc -O0, archc -O2, the
   torch export (dynamic batch and sequence), and the torch export after onnxruntime's
   transformer optimizer (optimize_model, where it applies).
3. Graph counts of each file, and of the graph onnxruntime actually runs (dumped once with
   SessionOptions.optimized_model_filepath): nodes, Transposes and fused ops.

--quick: gpt2 only, batch 1, one run, few iterations (a smoke test).
torch, transformers and timm are needed (`pip install -e ".[parity]"`).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEQ, IMAGE, NOISE, SEED = 128, 224, 0.02, 0
FUSED = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization", "LayerNormalization",
         "FusedMatMul", "BiasGelu", "Gelu", "FastGelu", "RotaryEmbedding", "RMSNormalization",
         "SkipSimplifiedLayerNormalization")
# model -> (kind, onnxruntime.transformers.optimizer model_type or None)
MODELS = {"gpt2": ("text", "gpt2"), "bert": ("text", "bert"), "vit": ("image", "vit"), "resnet50": ("image", None)}
from passes_report import VARIANTS, print_tables  # noqa: E402  (beside this file)


# ---- the reference models --------------------------------------------------------------

def build(name: str, randomize: bool = True):
    """The reference module in eval mode; with `randomize`, seeded N(0, 0.02) noise on every
    parameter (as tests/parity does), so that a mis-bound tensor would show."""
    import torch
    torch.manual_seed(SEED)
    if name == "gpt2":
        from transformers import GPT2Config, GPT2Model
        model = GPT2Model(GPT2Config(use_cache=False))
    elif name == "bert":
        from transformers import BertConfig, BertModel
        model = BertModel(BertConfig())          # with the pooler, as examples/bert.arch
    else:
        import timm
        model = timm.create_model({"vit": "vit_base_patch16_224", "resnet50": "resnet50"}[name], pretrained=False)
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * NOISE)
    return model.eval()


def make_inputs(name: str, batch: int) -> list:
    """The model's inputs, in the order of both archc's and the export's inputs."""
    import numpy as np
    rng = np.random.default_rng(SEED + batch)
    if MODELS[name][0] == "image":
        return [rng.standard_normal((batch, 3, IMAGE, IMAGE)).astype(np.float32)]
    ids = rng.integers(0, 50257 if name == "gpt2" else 30522, (batch, SEQ), dtype=np.int64)
    if name == "gpt2":
        return [ids]
    mask = np.ones((batch, SEQ), dtype=np.int64)
    mask[1::2, SEQ - 11:] = 0                    # every other sequence right-padded
    return [ids, mask]


def torch_output(model, arrays):
    import torch
    with torch.no_grad():
        out = model(*[torch.from_numpy(a) for a in arrays])
    return (out if isinstance(out, torch.Tensor) else out.last_hidden_state).numpy()


def export_main(name: str, weights: str, out: str, batch: int) -> None:
    """In a fresh process (`--_export`): build, load the weights, then time the export call
    alone. batch 0: dynamic batch (and sequence); else a static export at that batch."""
    t0 = time.perf_counter()
    import torch
    from safetensors.torch import load_file
    __import__("timm" if MODELS[name][0] == "image" else "transformers")
    t1 = time.perf_counter()
    model = build(name, randomize=False)
    model.load_state_dict(load_file(weights))
    example = [torch.from_numpy(a) for a in make_inputs(name, batch or 2)]
    dyn = None
    if not batch:
        d = torch.export.Dim.DYNAMIC
        dyn = tuple({0: d, 1: d} if a.dim() == 2 else {0: d} for a in example)
    t2 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, tuple(example), out, dynamo=True, dynamic_shapes=dyn, external_data=False)
    t3 = time.perf_counter()
    print(f"TIMES {t1 - t0:.3f} {t2 - t1:.3f} {t3 - t2:.3f}")


# ---- measuring -------------------------------------------------------------------------

def run_timed(cmd: list[str]) -> tuple[float, str]:
    import resource
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_timed.cpu = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime  # the child's CPU seconds
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1][:150]}")
    return elapsed, done.stdout


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[-1][:120] if msg else ''}".replace("|", "/")


def session_options(threads: int, dump: str | None = None):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if dump:
        opts.optimized_model_filepath = dump
    return opts


def graph_counts(path: str) -> dict:
    """Nodes (subgraphs included), Transposes and the fused-op histogram of an ONNX file."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    ops, fused = Counter(), Counter()

    def walk(graph):
        for node in graph.node:
            ops[node.op_type] += 1
            if node.op_type in FUSED:
                fused[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(g)
    walk(model.graph)
    return {"nodes": sum(ops.values()), "Transpose": ops["Transpose"], "fused": sum(fused.values()),
            "hist": ", ".join(f"{k} {v}" for k, v in sorted(fused.items())) or "-",
            "functions": len(model.functions)}


def interleaved_latency(sessions: dict, arrays, warmup: int, iters: int) -> tuple[dict, dict]:
    """Median seconds per run of each session, timed round-robin (one run of each in turn), so
    that load from elsewhere on the machine falls on every variant alike; and their outputs."""
    feeds = {k: {i.name: a for i, a in zip(s.get_inputs(), arrays)} for k, s in sessions.items()}
    outs = {}
    for k, s in sessions.items():
        for _ in range(max(1, warmup)):
            outs[k] = s.run(None, feeds[k])[0]
    times: dict = {k: [] for k in sessions}
    for _ in range(iters):
        for k, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds[k])
            times[k].append(time.perf_counter() - start)
    return {k: median(v) for k, v in times.items()}, outs


def bench_model(name: str, args, tmp: Path, log) -> dict:
    """Everything for one model; failures are recorded in their cells, never raised."""
    import numpy as np
    import onnxruntime as ort
    import torch
    if str(REPO / "tests" / "parity") not in sys.path:
        sys.path.insert(0, str(REPO / "tests" / "parity"))
    from parity_helpers import save_state_dict
    from archlang.compiler import cli
    r = {"compile": {}, "lat": {}, "diff": {}, "counts": {}, "notes": []}
    arch, weights = str(REPO / "examples" / f"{name}.arch"), str(tmp / f"{name}.safetensors")

    log(f"{name}: building the reference with random weights")
    torch.set_num_threads(args.threads)
    model = build(name)
    save_state_dict(model, Path(weights))
    inputs = {b: make_inputs(name, b) for b in args.batches}
    want = {b: torch_output(model, inputs[b]) for b in args.batches}
    del model

    files: dict[str, dict[int, str] | str] = {}       # variant -> path, or {batch: path}, or "n/a (why)"
    compile_args = lambda level, out: ["compile", arch, "-o", out, "--weights", weights, f"-O{level}"]  # noqa: E731
    log(f"{name}: archc compile -O0 (in-process warm-up), then -O2 x{args.runs} in-process and in a fresh process")
    for level in (0, 2):
        out = str(tmp / f"{name}.O{level}.onnx")
        times = []
        for _ in range(1 if level == 0 else args.runs):
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()) as err:
                rc = cli.main(compile_args(level, out))
            times.append(time.perf_counter() - start)
            if rc != 0:
                files[VARIANTS[level // 2]] = f"n/a (archc exit {rc}: {err.getvalue().strip()[-120:]})"
                break
        else:
            files[VARIANTS[level // 2]] = out
            if level == 2:
                r["compile"]["archc in-process"] = median(times)
    try:
        cmd = [sys.executable, "-m", "archlang.compiler.cli", *compile_args(2, str(tmp / f"{name}.O2b.onnx"))]
        walls, cpus = [], []
        for _ in range(args.runs):
            walls.append(run_timed(cmd)[0])
            cpus.append(run_timed.cpu)
        r["compile"]["archc process"], r["compile"]["archc process cpu"] = median(walls), median(cpus)
    except RuntimeError as e:
        r["compile"]["archc process"] = f"failed ({e})"

    log(f"{name}: torch.onnx.export(dynamo=True) x{args.runs}, each in a fresh process")
    def export(batch: int, runs: int) -> str:
        out = str(tmp / f"{name}.torch{batch or ''}.onnx")
        cmd = [sys.executable, __file__, "--_export", name, weights, out, str(batch)]
        times = [list(map(float, run_timed(cmd)[1].split("TIMES")[-1].split())) for _ in range(runs)]
        r["compile"]["torch export call"] = median([t[2] for t in times])
        r["compile"]["torch imports"] = median([t[0] for t in times])
        r["compile"]["torch model build"] = median([t[1] for t in times])
        return out
    try:
        path = export(0, args.runs)
        files["torch export"] = {b: path for b in args.batches}
    except Exception as e:
        r["notes"].append(f"dynamic-shape export failed ({short(e)}); one static export per batch")
        try:
            files["torch export"] = {b: export(b, args.runs if i == 0 else 1) for i, b in enumerate(args.batches)}
        except Exception as e2:
            files["torch export"] = f"failed ({short(e2)})"
            r["compile"]["torch export call"] = files["torch export"]

    opt_type = MODELS[name][1]
    if isinstance(files["torch export"], str):
        files["torch + ORT optimizer"] = "n/a (no torch export)"
    elif opt_type is None:
        files["torch + ORT optimizer"] = "n/a (no transformer model type for a CNN)"
    else:
        log(f"{name}: onnxruntime.transformers.optimizer.optimize_model(model_type={opt_type!r})")
        try:
            from onnxruntime.transformers.optimizer import optimize_model
            done = {}
            for b, src in files["torch export"].items():
                if src not in done:
                    done[src] = str(tmp / f"{Path(src).stem}.ortopt.onnx")
                    with contextlib.redirect_stdout(io.StringIO()):
                        optimize_model(src, model_type=opt_type, num_heads=12, hidden_size=768,
                                       opt_level=1).save_model_to_file(done[src])
            files["torch + ORT optimizer"] = {b: done[src] for b, src in files["torch export"].items()}
        except Exception as e:
            files["torch + ORT optimizer"] = f"n/a ({short(e)})"

    opts = session_options(args.threads)         # one SessionOptions object for every timed session
    sessions: dict = {b: {} for b in args.batches}
    for variant in VARIANTS:
        f = files[variant]
        if isinstance(f, str) and f.startswith(("n/a", "failed")):
            r["counts"][variant] = r["lat"][variant] = f
            continue
        by_batch = f if isinstance(f, dict) else {b: f for b in args.batches}
        first = by_batch[args.batches[0]]
        log(f"{name}: {variant}: graph counts and onnxruntime sessions")
        try:
            dump = str(tmp / "ort_dump.onnx")       # the graph onnxruntime runs, with the same settings
            try:
                ort.InferenceSession(first, session_options(args.threads, dump), providers=["CPUExecutionProvider"])
                r["counts"][variant] = (graph_counts(first), graph_counts(dump))
                os.remove(dump)
            except Exception as e:
                r["counts"][variant] = (graph_counts(first), f"dump failed ({short(e)})")
            opened: dict = {}
            for b in args.batches:
                if by_batch[b] not in opened:
                    opened[by_batch[b]] = ort.InferenceSession(by_batch[b], opts, providers=["CPUExecutionProvider"])
                sessions[b][variant] = opened[by_batch[b]]
        except Exception as e:
            r["lat"][variant] = f"failed ({short(e)})"
            r["counts"].setdefault(variant, r["lat"][variant])
    for b in args.batches:
        log(f"{name}: latency at batch {b}, the variants timed in turn")
        try:
            medians, outs = interleaved_latency(sessions[b], inputs[b], args.warmup, args.iters)
        except Exception as e:
            for variant in sessions[b]:
                r["lat"][variant] = f"failed ({short(e)})"
            continue
        for variant, t in medians.items():
            r["lat"].setdefault(variant, {})[b] = t
            r["diff"].setdefault(variant, {})[b] = float(np.max(np.abs(outs[variant].astype(np.float64) - want[b])))
    del sessions
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,bert,vit,resnet50", help="comma-separated, of " + ",".join(MODELS))
    parser.add_argument("--runs", type=int, default=3, help="compile-time runs (default 3)")
    parser.add_argument("--iters", type=int, default=20, help="timed onnxruntime runs per latency (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed onnxruntime runs first (default 3)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="gpt2, batch 1, one run, 5 iterations")
    parser.add_argument("--_export", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._export:
        name, weights, out, batch = args._export
        return export_main(name, weights, out, int(batch))
    if args.quick:
        args.models, args.batches, args.runs, args.iters, args.warmup = "gpt2", "1", 1, 5, 1
    args.batches = [int(b) for b in args.batches.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")

    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs; Python "
          f"{platform.python_version()}; " + ", ".join(f"{p} {version(p)}" for p in
                                                       ("onnxruntime", "onnx", "torch", "transformers", "timm")))
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import timm  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"{e}: this benchmark needs the parity extra (pip install -e '.[parity]')")

    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            try:
                results[name] = bench_model(name, args, Path(tmp), log)
            except Exception as e:      # a failure outside the guarded steps: report it, go on
                results[name] = {"compile": {"archc process": f"failed ({short(e)})"}, "lat": {}, "diff": {},
                                 "counts": {}, "notes": [f"failed: {short(e)}"]}
            for f in Path(tmp).glob(f"{name}.*"):
                f.unlink()
    print_tables(results, args, SEQ, IMAGE)


if __name__ == "__main__":
    main()
