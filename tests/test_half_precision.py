"""f16 and bf16: the rounding the NumPy backend emulates, what `--dtype` reads, weights in half
precision, and both backends agreeing on small models (tests/parity/test_half_parity.py
holds the examples against torch and against f32)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from archlang.backends import numpy_runtime_half
from archlang.backends.numpy_codegen import emit_module, run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.backends.onnx_half_io import float32_io
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.passes import optimize

REPO = Path(__file__).resolve().parents[1]


def bf16_values(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def test_round_bf16_is_round_to_nearest_even():
    """The NumPy module's own rounding (numpy only) against ml_dtypes' conversion, on random
    values, exact ties both ways, the largest finite float32 (overflows to inf), subnormals,
    infinities and NaN."""
    rng = np.random.default_rng(0)
    one_tie = np.float32(1 + 2 ** -8)          # halfway between 1 and the next bfloat16: to 1 (even)
    odd_tie = np.float32(1 + 3 * 2 ** -8)      # halfway above an odd mantissa: up
    x = np.concatenate([rng.standard_normal(10000).astype(np.float32) * 10.0 ** rng.integers(-40, 38, 10000),
                        np.array([one_tie, -one_tie, odd_tie, np.finfo(np.float32).max, 1e-45, -0.0,
                                  np.inf, -np.inf], np.float32)]).astype(np.float32)
    got = numpy_runtime_half.round_bf16(x)
    assert got.dtype == np.float32
    assert np.array_equal(got, bf16_values(x))
    assert got[-8] == 1.0 and got[-6] == np.float32(1 + 4 * 2 ** -8) and got[-5] == np.inf
    assert np.isnan(numpy_runtime_half.round_bf16(np.array([np.nan], np.float32)))[0]
    assert numpy_runtime_half.round_bf16(np.float32(1.3)).shape == ()


def _graph(text: str, dtype: str, tmp_path: Path, level: int = 0):
    path = tmp_path / "m.arch"
    path.write_text(text)
    graph = load_graph(str(path), SourceCache(), {}, float_dtype=dtype)
    optimize(graph, level)
    return graph


MODEL = """
use "nn"
axis batch, seq
axis key ~ seq
axis embed = 16, hidden = 32

model Small(x: f32[batch, seq, embed], keep: bool[batch, seq], wide: f64[batch, embed]) -> (y: f32[batch, seq, embed], w: f64[batch, embed]) {
  scores = (x @ rename(x, seq -> key) over embed) / sqrt(|embed|) + causal(seq, key)
  a = (softmax(scores over key) @ rename(x, seq -> key) over key) * cast(keep, f32)
  h = layernorm(a + x over embed)
  return Linear[hidden, embed](gelu(Linear[embed, hidden](h) as up)) as down, wide * 2
}
"""


def test_dtype_reads_every_f32_as_the_new_dtype(tmp_path):
    graph = _graph(MODEL, "bf16", tmp_path)
    dtypes = {name: v.type.dtype for name, v in graph.inputs + graph.outputs}
    assert dtypes == {"x": "bf16", "keep": "bool", "wide": "f64", "y": "bf16", "w": "f64"}
    assert {p.type.dtype for p in graph.params.values()} == {"bf16"}
    floats = {v.type.dtype for n in graph.nodes for v in n.outputs} - {"bool", "i64"}
    assert floats == {"bf16", "f64"}, floats   # the cast, the literals, the causal mask: all bf16


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("level", [0, 2])
def test_numpy_onnx_and_generated_module_agree(dtype, level, tmp_path):
    """The rule (each op in float32, results rounded) gives the same numbers in the evaluator,
    the generated module and onnxruntime (which computes every half op between Casts)."""
    graph = _graph(MODEL, dtype, tmp_path, level)
    params = load_params(graph, None, seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 16)).astype(np.float16 if dtype == "f16" else np.float32)
    inputs = {"x": x, "keep": rng.random((2, 5)) < 0.8, "wide": rng.standard_normal((2, 16))}
    ref = run_graph(graph, params, inputs)

    module = tmp_path / "gen.py"
    module.write_text(emit_module(graph))
    namespace: dict = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)
    gen = namespace["small"](params, **inputs)

    sess = ort.InferenceSession(float32_io(to_onnx(graph, params)).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    ort_out = dict(zip(["y", "w"], sess.run(["y", "w"], inputs)))
    y = ref["y"]
    assert y.dtype == (np.float16 if dtype == "f16" else np.float32)
    if dtype == "bf16":
        assert np.array_equal(y, bf16_values(y))
    assert np.array_equal(gen["y"], y)
    scale = float(np.max(np.abs(y)))
    ulp = 2.0 ** (-10 if dtype == "f16" else -7)    # one unit in the last place, near 1
    assert np.max(np.abs(ort_out["y"].astype(np.float64) - y)) <= 2 * ulp * scale
    assert np.array_equal(ort_out["w"], ref["w"])


def test_onnx_file_holds_bf16_initializers_and_interface(tmp_path):
    graph = _graph(MODEL, "bf16", tmp_path, level=2)
    model = to_onnx(graph, load_params(graph, None, seed=0))
    onnx.checker.check_model(model, full_check=True)
    assert {t.data_type for t in model.graph.initializer if t.name.startswith(("up.", "down."))} == {
        onnx.TensorProto.BFLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16


def test_half_weights_bind_and_convert(tmp_path):
    """A bf16 safetensors file binds to a bf16 model as it is and to an f32 one (widened); an f32
    file binds to a bf16 model rounded to nearest even."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    text = "use \"nn\"\naxis batch, a = 3, b = 5\nmodel M(x: f32[batch, a]) -> f32[batch, b] {\n" \
           "  return Linear[a, b](x) as fc\n}\n"
    weight = torch.randn(5, 3)
    save_file({"fc.weight": weight, "fc.bias": torch.zeros(5)}, str(tmp_path / "f32.safetensors"))
    save_file({"fc.weight": weight.bfloat16(), "fc.bias": torch.zeros(5, dtype=torch.bfloat16)},
              str(tmp_path / "bf16.safetensors"))
    want = weight.bfloat16().float().numpy()
    for dtype, file in (("bf16", "bf16"), ("bf16", "f32"), ("f32", "bf16")):
        params = load_params(_graph(text, dtype, tmp_path), str(tmp_path / f"{file}.safetensors"), seed=0)
        w = params["fc.weight"]
        assert w.dtype == np.float32 and np.array_equal(w, want), (dtype, file)


def test_weights_link_refers_to_bf16_tensors_in_place(tmp_path):
    """`--dtype bf16 --weights-link` on a bf16 file copies nothing, and computes what the
    copied model computes."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    torch.manual_seed(0)
    save_file({"fc1.weight": torch.randn(256, 784).bfloat16(), "fc1.bias": torch.randn(256).bfloat16(),
               "fc2.weight": torch.randn(10, 256).bfloat16(), "fc2.bias": torch.randn(10).bfloat16()},
              str(tmp_path / "w.safetensors"))
    archc = [sys.executable, "-m", "archlang.compiler.cli", "compile", str(REPO / "examples" / "mlp.arch"),
             "--dtype", "bf16", "--weights", str(tmp_path / "w.safetensors")]
    r = subprocess.run(archc + ["--weights-link", "-o", str(tmp_path / "linked.onnx")], capture_output=True, text=True)
    assert r.returncode == 0 and "4 tensors linked" in r.stderr and "0 copied" in r.stderr, r.stderr
    r = subprocess.run(archc + ["-o", str(tmp_path / "copied.onnx")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(0).standard_normal((2, 784)).astype(np.float32)
    outs = [ort.InferenceSession(float32_io(onnx.load(str(tmp_path / f))).SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for f in ("linked.onnx", "copied.onnx")]
    assert np.array_equal(outs[0], outs[1])


def test_cli_dtype_compiles_and_runs(tmp_path):
    """`archc compile --dtype bf16` writes a checked model; `archc run --dtype f16` on both backends."""
    archc = [sys.executable, "-m", "archlang.compiler.cli"]
    example = str(REPO / "examples" / "mlp.arch")
    r = subprocess.run(archc + ["compile", example, "--dtype", "bf16", "-o", str(tmp_path / "m.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    outs = {}
    for backend in ("numpy", "onnx"):
        r = subprocess.run(archc + ["run", example, "--dtype", "f16", "--backend", backend,
                                    "--output", str(tmp_path / f"{backend}.npz")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs[backend] = np.load(tmp_path / f"{backend}.npz")["output"]
        assert outs[backend].dtype == np.float16
    assert np.allclose(outs["numpy"], outs["onnx"], atol=2e-3)


# Every example but the two whose default size takes seconds per precision in NumPy (mixer, vit).
EXAMPLES = {"mlp": {}, "resnet": {}, "rnn": {}, "moe": {}, "fftconv": {}, "looped": {}, "se_mobile": {},
            "linear_attention": {}, "swin_stages": {}, "alibi": {}, "t5_bias": {}, "unet": {}, "llama": {},
            "gpt2": dict(vocab="100", ctx="64", embed="64", heads="4", layers="2"),
            "bert": dict(layers="1", vocab="100", embed="64", heads="4")}
# max |NumPy - onnxruntime| / max |NumPy|: both round each op's float32 result, so they differ
# only where float32 rounding inside an op tips a half rounding (measured: up to 1e-3 in f16,
# 1e-2 in bf16, on unet)
EXAMPLE_TOL = {"f16": 4e-3, "bf16": 3e-2}


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_numpy_matches_onnx(name, dtype):
    from archlang.compiler.driver import random_inputs
    graph = load_graph(str(REPO / "examples" / f"{name}.arch"), SourceCache(), EXAMPLES[name], float_dtype=dtype)
    optimize(graph, 2)
    params = load_params(graph, None, seed=0)
    inputs = random_inputs(graph, seed=1)
    want = run_graph(graph, params, inputs)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(float32_io(to_onnx(graph, params)).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    got = dict(zip([n for n, _ in graph.outputs], sess.run(None, inputs)))
    for out, ref in want.items():
        ref = ref.astype(np.float64)
        assert np.all(np.isfinite(ref)), f"{name}:{out} is not finite"
        rel = np.max(np.abs(got[out] - ref)) / max(np.max(np.abs(ref)), 1e-30)
        assert rel <= EXAMPLE_TOL[dtype], f"{name}:{out} in {dtype}: {rel:.2e}"


def test_literals_past_the_half_range_are_found():
    """What the warning of tests/ui/dtypes/half_literal_overflow.arch rests on: rounding to
    nearest, 65519 is still 65504 in f16 and 65520 is inf; `inf` itself is meant."""
    from archlang.compiler.dtypes import rounds_to_inf
    assert [rounds_to_inf(v, "f16") for v in (65504, 65519, 65520, -1e9, float("inf"), 10 ** 400)] == [
        False, False, True, True, False, True]
    assert [rounds_to_inf(v, "bf16") for v in (1e9, 3.38e38, -3.4028234663852886e38)] == [False, False, True]
    assert not rounds_to_inf(1e9, "f32")
