"""Half precision end to end: examples compiled with `--dtype f16|bf16` against the same
model in f32, against torch running the reference in that precision, and NumPy against
onnxruntime in each precision.

The reference is built in f32 with seeded random weights and converted with torch's
`.to(dtype)`; its half `state_dict()` is saved with safetensors (F16 / BF16 tensors) and bound
as it is. archlang computes each op in float32 and rounds its results (compiler/dtypes.py);
torch's CPU kernels round at their own places (a bf16 layer norm, GELU or softmax computes
in float32 inside), so the two are compared within a tolerance of the precision, relative to
the largest output: `REL_TOL` below, a few times what was measured (see the printouts).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

import numpy as np  # noqa: E402
from parity_helpers import EXAMPLES, BATCH, build_reference, token_ids  # noqa: E402

# max |half - other| / max |other|, for each comparison
REL_TOL = {
    "f16": {"torch": 5e-3, "f32": 5e-3, "onnx": 5e-3},
    "bf16": {"torch": 4e-2, "f32": 4e-2, "onnx": 4e-2},
}
TORCH_DTYPES = {"f16": "float16", "bf16": "bfloat16"}


def _compile(example, sets, dtype, weights, level=2):
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph, load_params
    from archlang.compiler.passes import optimize
    graph = load_graph(str(EXAMPLES / f"{example}.arch"), SourceCache(), dict(sets), float_dtype=dtype)
    optimize(graph, level)
    return graph, load_params(graph, str(weights), seed=0)


def _run_both(graph, params, inputs, tmp_path):
    """NumPy and onnxruntime (the compiled file, written and checked as `archc compile` does)."""
    import onnx
    import onnxruntime as ort
    from archlang.backends.numpy_codegen import run_graph
    from archlang.backends.onnx_export import compile_to_file
    from archlang.backends.onnx_half_io import float32_io
    path = tmp_path / "model.onnx"
    compile_to_file(graph, params, str(path))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(float32_io(onnx.load(str(path))).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [n for n, _ in graph.outputs]
    return run_graph(graph, params, inputs), dict(zip(names, sess.run(names, dict(inputs))))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _half_inputs(inputs, dtype):
    """Float inputs as the half model takes them: float16 arrays for f16, float32 for bf16
    (rounded by both backends on the way in)."""
    return {k: v.astype(np.float16) if dtype == "f16" and v.dtype == np.float32 else v for k, v in inputs.items()}


def check_half(example, sets, reference, inputs, output, dtype, tmp_path, keywords=None, field=None):
    from safetensors.torch import save_file
    model = build_reference(reference)
    f32_weights = tmp_path / "f32.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(f32_weights))
    half = model.to(getattr(torch, TORCH_DTYPES[dtype]))
    half_weights = tmp_path / f"{dtype}.safetensors"
    save_file({k: v.contiguous() for k, v in half.state_dict().items()}, str(half_weights))
    with torch.no_grad():
        feeds = {(keywords or {}).get(k, k): torch.from_numpy(v) if v.dtype != np.float32
                 else torch.from_numpy(v).to(getattr(torch, TORCH_DTYPES[dtype])) for k, v in inputs.items()}
        out = half(**feeds)
        want_torch = (getattr(out, field) if field else out).float().numpy()

    graph32, params32 = _compile(example, sets, "f32", f32_weights)
    from archlang.backends.numpy_codegen import run_graph
    want_f32 = run_graph(graph32, params32, inputs)[output]

    graph, params = _compile(example, sets, dtype, half_weights)
    got_np, got_ort = _run_both(graph, params, _half_inputs(inputs, dtype), tmp_path)
    got_np, got_ort = got_np[output], got_ort[output]
    if dtype == "f16":
        assert got_np.dtype == got_ort.dtype == np.float16
    else:  # bf16 values in float32: every one a bfloat16
        import ml_dtypes
        for got in (got_np, got_ort):
            assert np.array_equal(got, got.astype(ml_dtypes.bfloat16).astype(np.float32))
    errors = {"torch": max(_rel(got_np, want_torch), _rel(got_ort, want_torch)),
              "f32": max(_rel(got_np, want_f32), _rel(got_ort, want_f32)),
              "onnx": _rel(got_np, got_ort)}
    print(f"\n{example} {dtype}: relative max abs " + " ".join(f"vs {k}={v:.1e}" for k, v in errors.items())
          + f" (outputs up to {np.max(np.abs(want_f32)):.2f})")
    assert errors["f32"] > 0, "the half model computed exactly what the f32 one does: nothing was rounded"
    bad = {k: v for k, v in errors.items() if not v <= REL_TOL[dtype][k]}
    assert not bad, f"{example} in {dtype}: over the tolerance {REL_TOL[dtype]}: {bad}"


class Ref:
    """What build_reference needs: a constructor and a seed."""

    def __init__(self, make, seed=0):
        self.reference, self.seed = make, seed


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_gpt2_small(dtype, tmp_path):
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, bos_token_id=0,
                                     eos_token_id=0, use_cache=False, attn_implementation="eager")
    check_half("gpt2", {"layers": "2", "embed": "64", "heads": "4", "vocab": "100"},
               Ref(lambda: transformers.GPT2Model(config)), {"tokens": token_ids(np.random.default_rng(0), 100)},
               "output", dtype, tmp_path, keywords={"tokens": "input_ids"}, field="last_hidden_state")


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_resnet_small(dtype, tmp_path):
    from timm.models.resnet import Bottleneck, ResNet
    image = np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    check_half("resnet50", {"height": "32", "width": "32", "p1": "8", "p2": "16", "p3": "32", "p4": "64",
                            "classes": "10"},
               Ref(lambda: ResNet(block=Bottleneck, layers=[3, 4, 6, 3], channels=(8, 16, 32, 64), num_classes=10)),
               {"image": image}, "output", dtype, tmp_path, keywords={"image": "x"})


class TorchMLP(torch.nn.Module):
    """examples/mlp.arch in torch: fc1, exact GELU, fc2."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(784, 256), torch.nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_mlp(dtype, tmp_path):
    x = np.random.default_rng(0).standard_normal((BATCH, 784)).astype(np.float32)
    check_half("mlp", {}, Ref(TorchMLP), {"x": x}, "output", dtype, tmp_path)
