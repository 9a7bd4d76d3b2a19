"""Parity with reference implementations (transformers' models, built in torch).

`check_parity(case, tmp_path)` does what a user with a Hugging Face model does: build the
reference from its config with random weights, save its `state_dict()` as it is with
safetensors, compile the example with `--weights` that file (through the Python API, the
functions `archc` calls), and run onnxruntime and the NumPy reference on the same inputs
as torch. Every output must be within `TOL` (max abs, fp32) of the reference's, on both
backends.

torch and transformers are imported only inside the functions, so collecting this folder
without them costs nothing; each test module `importorskip`s them at its top.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TOL = 1e-4                 # max abs difference from the reference, fp32
BATCH, SEQ = 2, 32


@dataclass
class Case:
    """One model at one size: the example with its `--set` values, and the reference."""
    example: str                                   # examples/NAME.arch
    sets: Mapping[str, str]                        # `--set` values (empty: the file's defaults)
    reference: Callable[[], Any]                   # builds the torch module (weights random, seeded)
    inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]   # keyed by the model's input names
    outputs: Mapping[str, str]                     # the model's result name -> the reference's output field
    reference_inputs: Mapping[str, str] = field(default_factory=dict)   # input name -> the reference's keyword, where they differ
    seed: int = 0


def token_ids(rng: np.random.Generator, vocab: int) -> np.ndarray:
    return rng.integers(0, vocab, (BATCH, SEQ), dtype=np.int64)


def padding_mask() -> np.ndarray:
    """1 for a token, 0 for padding: the second sequence is right-padded (its last 11
    positions), and the first has one masked position inside it."""
    mask = np.ones((BATCH, SEQ), dtype=np.int64)
    mask[1, SEQ - 11:] = 0
    mask[0, 5] = 0
    return mask


def build_reference(case: Case):
    """The reference module in eval mode, every parameter random.

    The constructors' initialisation leaves layer-norm weights at 1 and biases at 0, where
    a mis-bound or ignored tensor would go unnoticed; a seeded perturbation of every
    parameter makes each one matter."""
    import torch
    torch.manual_seed(case.seed)
    model = case.reference().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def save_state_dict(model, path: Path) -> None:
    """The reference's state_dict() as it is: every entry, under its own name."""
    from safetensors.torch import save_file
    sd = model.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def run_reference(model, inputs: Mapping[str, np.ndarray], fields: list[str],
                  keywords: Mapping[str, str]) -> dict[str, np.ndarray]:
    import torch
    with torch.no_grad():
        out = model(**{keywords.get(k, k): torch.from_numpy(v) for k, v in inputs.items()})
    return {f: getattr(out, f).numpy() for f in fields}


def run_onnx(path: Path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(inputs))))


def check_parity(case: Case, tmp_path: Path) -> dict[str, float]:
    """Compile `case.example` bound to the reference's weights; both backends must match
    the reference to TOL. Returns the max abs errors, keyed `backend:output`."""
    t = time.perf_counter()
    model = build_reference(case)
    weights = tmp_path / f"{case.example}.safetensors"
    save_state_dict(model, weights)
    inputs = case.inputs(np.random.default_rng(case.seed))
    fields = run_reference(model, inputs, list(case.outputs.values()), case.reference_inputs)
    del model
    want = {name: fields[field_] for name, field_ in case.outputs.items()}
    return compare_with_reference(case.example, case.sets, weights, inputs, want, tmp_path,
                                  {"reference": time.perf_counter() - t})


def compare_with_reference(example: str, sets: Mapping[str, str], weights: Path, inputs: Mapping[str, np.ndarray],
                           want: Mapping[str, np.ndarray], tmp_path: Path, times: dict[str, float],
                           against: str = "the reference", level: int = 2) -> dict[str, float]:
    """What `archc compile --weights` and `archc run` do, through the Python API: compile
    examples/EXAMPLE.arch bound to `weights` (optimised at -O`level`, the CLI's default -O2:
    the model users get), run onnxruntime and the NumPy reference on `inputs`; every output
    must be within TOL of `want` (the reference's, by output name). Prints and returns the
    max abs errors, keyed `backend:output`. (-O0 is held to -O2 by tests/passes.)"""
    from archlang.backends.numpy_codegen import run_graph
    from archlang.backends.onnx_export import compile_to_file
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph, load_params
    from archlang.compiler.passes import optimize

    t = time.perf_counter()
    graph = load_graph(str(EXAMPLES / f"{example}.arch"), SourceCache(), dict(sets))
    optimize(graph, level)
    params = load_params(graph, str(weights), seed=0)    # `--weights`: binds every tensor by name
    onnx_path = tmp_path / f"{example}.onnx"
    compile_to_file(graph, params, str(onnx_path))
    times["compile"] = time.perf_counter() - t

    t = time.perf_counter()
    got = {"onnx": run_onnx(onnx_path, inputs)}
    times["onnx"] = time.perf_counter() - t
    t = time.perf_counter()
    got["numpy"] = run_graph(graph, params, inputs)
    times["numpy"] = time.perf_counter() - t

    errors = max_abs_errors(got, want)
    scale = max(float(np.max(np.abs(ref))) for ref in want.values())
    summary = " ".join(f"{k}={v:.2e}" for k, v in errors.items())
    print(f"\n{example} {dict(sets) or 'default size'}: max abs {summary} (outputs up to {scale:.2f}); seconds "
          + " ".join(f"{k}={v:.1f}" for k, v in times.items()))
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"{example}: max abs difference from {against} over {TOL}: {bad}"
    return errors


def max_abs_errors(got: Mapping[str, Mapping[str, np.ndarray]], want: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max abs difference of each backend's outputs (`got[backend][name]`, f32, finite, of the
    reference's shapes) from the reference's, keyed `backend:name`."""
    errors: dict[str, float] = {}
    for backend, outs in got.items():
        assert sorted(outs) == sorted(want), f"{backend}: outputs {sorted(outs)}"
        for name, ref in want.items():
            out = outs[name]
            assert out.shape == ref.shape, f"{backend}:{name}: shape {out.shape}, reference {ref.shape}"
            assert out.dtype == np.float32, f"{backend}:{name}: {out.dtype}"
            assert np.all(np.isfinite(out)), f"{backend}:{name}: not finite"
            errors[f"{backend}:{name}"] = float(np.max(np.abs(out.astype(np.float64) - ref)))
    return errors
