"""`--weights` (.safetensors and .npz), stored layouts (`from "name" as [...]`) and `--seed`.

Each test builds a tiny model, writes a weights file with known values, runs `archc`
and compares with the same computation done by hand in NumPy. `archc` runs in-process
here (test_cli.py covers the real command line), which keeps this file fast.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from safetensors.numpy import save_file

TINY = """
use "nn"
axis batch
axis din = 3, dout = 2

model Tiny(x: f32[batch, din]) -> f32[batch, dout] {
  return Linear[din, dout](x) as fc
}
"""

LAYOUTS = """
axis batch
axis a = 3, b = 2
axis three = 3, heads = 2, head = 4, embed = 5

block Proj(x: f32[batch, a]) -> f32[batch, b] {
  param w: [a, b] from "weight" as [b, a]
  return x @ w
}

model L(x: f32[batch, a], e: f32[batch, embed]) -> (y: f32[batch, b], z: f32[batch, three, heads, head],
                                                   p: f32[batch, b]) {
  param w: [a, b] from "w" as [b, a]
  param qkv: [embed, three, heads, head] from "attn.qkv" as [(three, heads, head), embed]
  return x @ w, e @ qkv, Proj(x) as proj
}
"""

@pytest.fixture
def archc(archc_inprocess):
    return archc_inprocess


RNG = np.random.default_rng(1234)
X = RNG.standard_normal((4, 3)).astype(np.float32)
W = RNG.standard_normal((2, 3)).astype(np.float32)  # torch layout [dout, din]
B = RNG.standard_normal((2,)).astype(np.float32)


def load_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_weights(path, tensors):
    if path.suffix == ".safetensors":
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    else:
        np.savez(path, **tensors)
    return path


def run(archc, model, tmp_path, *extra, backend="numpy", **inputs):
    np.savez(tmp_path / "in.npz", **inputs)
    out = tmp_path / f"out-{backend}.npz"
    r = archc("run", model, "--backend", backend, "--inputs", tmp_path / "in.npz", "--output", out, *extra)
    assert r.returncode == 0, r.stderr
    return load_npz(out)


# ---- binding a file -------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("backend", ["numpy", "onnx"])
def test_weights_file_binds_by_name(archc, write_arch, tmp_path, suffix, backend):
    model = write_arch(TINY)
    weights = save_weights(tmp_path / f"w{suffix}", {"fc.weight": W, "fc.bias": B})
    out = run(archc, model, tmp_path, "--weights", weights, backend=backend, x=X)
    np.testing.assert_allclose(out["output"], X @ W.T + B, rtol=1e-5, atol=1e-6)


def test_compiled_model_embeds_the_weights(archc, write_arch, tmp_path):
    model = write_arch(TINY)
    weights = save_weights(tmp_path / "w.safetensors", {"fc.weight": W, "fc.bias": B})
    out = tmp_path / "tiny.onnx"
    r = archc("compile", model, "--weights", weights, "-o", out)
    assert r.returncode == 0, r.stderr
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(inits["fc.weight"], W)
    np.testing.assert_array_equal(inits["fc.bias"], B)


def test_float64_weights_are_converted_to_the_declared_dtype(archc, write_arch, tmp_path):
    model = write_arch(TINY)
    weights = save_weights(tmp_path / "w.npz", {"fc.weight": W.astype(np.float64), "fc.bias": B.astype(np.float64)})
    out = run(archc, model, tmp_path, "--weights", weights, x=X)
    assert out["output"].dtype == np.float32
    np.testing.assert_allclose(out["output"], X @ W.T + B, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_a_bad_file_gives_one_error_listing_every_mismatch(archc, write_arch, tmp_path, suffix):
    model = write_arch(TINY)
    weights = save_weights(tmp_path / f"bad{suffix}", {
        "fc.weight": W.T.copy(),                      # mis-shaped: [3, 2] instead of [2, 3]
        "fc.extra": np.zeros(1, np.float32),          # unexpected
    })                                                # fc.bias missing
    r = archc("run", model, "--weights", weights, "--output", tmp_path / "o.npz")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.count("error") == 1, r.stderr
    text = r.stderr
    assert "missing" in text and "fc.bias [2]" in text
    assert "unexpected" in text and "fc.extra" in text
    assert "mis-shaped" in text and "fc.weight: expected [2, 3], found [3, 2]" in text
    assert not (tmp_path / "o.npz").exists()


def test_wrong_dtype_is_reported(archc, write_arch, tmp_path):
    model = write_arch(TINY)
    weights = save_weights(tmp_path / "w.npz", {"fc.weight": W.astype(np.int64), "fc.bias": B})
    r = archc("compile", model, "--weights", weights, "-o", tmp_path / "m.onnx")
    assert r.returncode == 1
    assert "wrong dtype" in r.stderr and "fc.weight: expected f32, found int64" in r.stderr


@pytest.mark.parametrize("name,content,message", [
    ("absent.safetensors", None, "not found"),
    ("w.bin", b"\0" * 16, "expected a .safetensors or .npz file"),
    ("corrupt.safetensors", b"this is not a safetensors file", "cannot read weights file"),
    ("corrupt.npz", b"this is not a zip archive", "cannot read weights file"),
])
def test_unreadable_weights_files_are_input_errors(archc, write_arch, tmp_path, name, content, message):
    model = write_arch(TINY)
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    r = archc("run", model, "--weights", path, "--output", tmp_path / "o.npz")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


# ---- stored layouts ----------------------------------------------------------------------

def layout_weights():
    w_stored = RNG.standard_normal((2, 3)).astype(np.float32)            # stored [b, a]
    qkv_stored = RNG.standard_normal((3 * 2 * 4, 5)).astype(np.float32)  # stored [(three, heads, head), embed]
    proj_stored = RNG.standard_normal((2, 3)).astype(np.float32)         # stored [b, a], in block `proj`
    return {"w": w_stored, "attn.qkv": qkv_stored, "proj.weight": proj_stored}


@pytest.mark.parametrize("backend", ["numpy", "onnx"])
def test_transposed_and_merged_stored_layouts(archc, write_arch, tmp_path, backend):
    model = write_arch(LAYOUTS)
    stored = layout_weights()
    weights = save_weights(tmp_path / "w.safetensors", stored)
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    e = RNG.standard_normal((4, 5)).astype(np.float32)
    out = run(archc, model, tmp_path, "--weights", weights, backend=backend, x=x, e=e)

    np.testing.assert_allclose(out["y"], x @ stored["w"].T, rtol=1e-5, atol=1e-5)
    qkv = stored["attn.qkv"].reshape(3, 2, 4, 5).transpose(3, 0, 1, 2)  # -> [embed, three, heads, head]
    np.testing.assert_allclose(out["z"], np.einsum("be,ethd->bthd", e, qkv), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["p"], x @ stored["proj.weight"].T, rtol=1e-5, atol=1e-5)


def test_stored_layout_shapes_appear_in_the_error(archc, write_arch, tmp_path):
    model = write_arch(LAYOUTS)
    stored = layout_weights()
    stored["attn.qkv"] = stored["attn.qkv"].T.copy()  # [5, 24], the declared-order mistake
    stored["w"] = stored["w"].T.copy()                # [3, 2]
    weights = save_weights(tmp_path / "w.npz", stored)
    r = archc("check", model)  # check takes no weights; compile binds them
    assert r.returncode == 0, r.stderr
    r = archc("compile", model, "--weights", weights, "-o", tmp_path / "m.onnx")
    assert r.returncode == 1
    assert "attn.qkv: expected [24, 5], found [5, 24]" in r.stderr
    assert "w: expected [2, 3], found [3, 2]" in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_a_layout_must_name_each_axis_once(archc, write_arch):
    model = write_arch("""
        axis batch
        axis a = 3, b = 2
        model L(x: f32[batch, a]) -> f32[batch, b] {
          param w: [a, b] from "w" as [b, b]
          return x @ w
        }
    """)
    r = archc("check", model)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{model}:4:19: error: the stored layout [b, b] must name each axis of `w`")


# ---- --seed ---------------------------------------------------------------------------------

SEEDED = """
use "nn"
axis batch
axis din = 3, dout = 2

model Tiny(x: f32[batch, din]) -> f32[batch, dout] {
  return LayerNorm[dout](Linear[din, dout](x) as fc) as ln
}
"""


def initializers(archc, model, tmp_path, *extra):
    out = tmp_path / "seeded.onnx"
    r = archc("compile", model, "-o", out, *extra)
    assert r.returncode == 0, r.stderr
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer
            if t.name in ("fc.weight", "fc.bias", "ln.weight", "ln.bias")}


def test_seed_changes_initial_weights_deterministically(archc, write_arch, tmp_path):
    model = write_arch(SEEDED)
    default = initializers(archc, model, tmp_path)
    seed0 = initializers(archc, model, tmp_path, "--seed", "0")
    seed1 = initializers(archc, model, tmp_path, "--seed", "1")
    seed1_again = initializers(archc, model, tmp_path, "--seed", "1")
    assert set(seed1) == {"fc.weight", "fc.bias", "ln.weight", "ln.bias"}
    for name in ("fc.weight", "fc.bias"):  # drawn from the seed
        np.testing.assert_array_equal(default[name], seed0[name])  # the default seed is 0
        np.testing.assert_array_equal(seed1[name], seed1_again[name])
        assert not np.array_equal(seed0[name], seed1[name]), name
    # torch.nn.Linear's uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), for the bias too (fan-in `din`)
    bound = 1 / np.sqrt(3)
    assert np.abs(seed1["fc.weight"]).max() <= bound and np.abs(seed1["fc.bias"]).max() <= bound
    assert np.abs(seed1["fc.bias"]).max() > 0
    for seeds in (seed0, seed1):  # `= ones` and `= zeros` ignore the seed
        np.testing.assert_array_equal(seeds["ln.weight"], np.ones(2, np.float32))
        np.testing.assert_array_equal(seeds["ln.bias"], np.zeros(2, np.float32))


def test_seed_changes_run_outputs(archc, write_arch, tmp_path):
    model = write_arch(TINY)
    a = run(archc, model, tmp_path, "--seed", "3", x=X)["output"]
    b = run(archc, model, tmp_path, "--seed", "3", x=X)["output"]
    c = run(archc, model, tmp_path, "--seed", "4", x=X)["output"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_weights_override_the_seed(archc, write_arch, tmp_path):
    model = write_arch(TINY)
    weights = save_weights(tmp_path / "w.npz", {"fc.weight": W, "fc.bias": B})
    a = run(archc, model, tmp_path, "--weights", weights, "--seed", "1", x=X)["output"]
    b = run(archc, model, tmp_path, "--weights", weights, "--seed", "2", x=X)["output"]
    np.testing.assert_array_equal(a, b)
