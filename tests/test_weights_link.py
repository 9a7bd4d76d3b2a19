"""`archc compile --weights W.safetensors --weights-link`: the model refers to the tensors
where they lie in W (ONNX external data with offsets into the safetensors file itself)
instead of copying them, and computes exactly what the embedded compile computes."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import save_file

# `w` is stored as is (a pure reshape of contiguous data), `qkv` in another axis order (linked
# with a Transpose in the graph), `b` as f16 (converted, so copied).
MODEL = """
axis batch
axis a = 3, b = 2
axis three = 3, heads = 2, head = 4, embed = 5

model L(x: f32[batch, a], e: f32[batch, embed]) -> (y: f32[batch, b], z: f32[batch, three, heads, head]) {
  param w: [a, b] from "w" as [a, b]
  param m: [three, heads, head] from "m" as [(three, heads, head)]
  param qkv: [embed, three, heads, head] from "attn.qkv" as [(three, heads, head), embed]
  param bias: [b] from "b"
  return x @ w + bias, e @ qkv + m
}
"""
RNG = np.random.default_rng(7)
TENSORS = {
    "w": RNG.standard_normal((3, 2)).astype(np.float32),
    "m": RNG.standard_normal((24,)).astype(np.float32),
    "attn.qkv": RNG.standard_normal((24, 5)).astype(np.float32),
    "b": RNG.standard_normal((2,)).astype(np.float16),
}
INPUTS = {"x": RNG.standard_normal((4, 3)).astype(np.float32), "e": RNG.standard_normal((4, 5)).astype(np.float32)}


@pytest.fixture
def archc(archc_inprocess):
    return archc_inprocess


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.arch"
    path.write_text(MODEL)
    return path


def save(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(TENSORS, str(path))
    return path


def run(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, INPUTS)


def test_linked_model_refers_to_the_safetensors_bytes_and_computes_the_same(archc, model, tmp_path):
    weights = save(tmp_path / "w.safetensors")
    embedded = archc("compile", model, "-o", tmp_path / "embedded.onnx", "--weights", weights)
    assert embedded.returncode == 0, embedded.stderr
    done = archc("compile", model, "-o", tmp_path / "linked.onnx", "--weights", weights, "--weights-link")
    assert done.returncode == 0, done.stderr
    assert "3 tensors linked in w.safetensors (1 through a Transpose)" in done.stderr
    assert "warning" not in done.stderr  # the weights were in the output's folder already
    onnx.checker.check_model(str(tmp_path / "linked.onnx"), full_check=True)
    for a, b in zip(run(tmp_path / "linked.onnx"), run(tmp_path / "embedded.onnx")):
        np.testing.assert_array_equal(a, b)

    data = weights.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    m = onnx.load(str(tmp_path / "linked.onnx"), load_external_data=False)
    external = {t.name: {e.key: e.value for e in t.external_data} for t in m.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL}
    assert set(external) == {"w", "m", "qkv.stored"}
    for name, ext in external.items():
        key = {"qkv.stored": "attn.qkv"}.get(name, name)
        assert ext["location"] == "w.safetensors"
        begin, end = header[key]["data_offsets"]
        assert (int(ext["offset"]), int(ext["length"])) == (8 + header_len + begin, end - begin)
    dims = {t.name: list(t.dims) for t in m.graph.initializer}
    assert dims["m"] == [3, 2, 4] and dims["qkv.stored"] == [3, 2, 4, 5]
    assert [n.op_type for n in m.graph.node if "qkv.stored" in n.input] == ["Transpose"]
    assert (tmp_path / "linked.onnx").stat().st_size < (tmp_path / "embedded.onnx").stat().st_size


def test_weights_elsewhere_are_hard_linked_beside_the_output(archc, model, tmp_path):
    weights = save(tmp_path / "store" / "w.safetensors")
    out = tmp_path / "out" / "linked.onnx"
    done = archc("compile", model, "-o", out, "--weights", weights, "--weights-link")
    assert done.returncode == 0, done.stderr
    placed = out.parent / "w.safetensors"
    assert not placed.is_symlink() and os.path.samefile(placed, weights)
    assert "hard-linked" in done.stderr and "onnx.checker" in done.stderr
    archc("compile", model, "-o", tmp_path / "embedded.onnx", "--weights", weights)
    for a, b in zip(run(out), run(tmp_path / "embedded.onnx")):
        np.testing.assert_array_equal(a, b)
    again = archc("compile", model, "-o", out, "--weights", weights, "--weights-link")  # the link is reused
    assert again.returncode == 0, again.stderr


def test_without_weights_link_the_model_embeds_everything(archc, model, tmp_path):
    weights = save(tmp_path / "w.safetensors")
    done = archc("compile", model, "-o", tmp_path / "m.onnx", "--weights", weights)
    assert done.returncode == 0, done.stderr
    m = onnx.load(str(tmp_path / "m.onnx"))
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


def test_weights_link_needs_weights(archc, model, tmp_path):
    done = archc("compile", model, "-o", tmp_path / "m.onnx", "--weights-link")
    assert done.returncode == 2 and "give --weights" in done.stderr


def test_weights_link_needs_safetensors(archc, model, tmp_path):
    np.savez(tmp_path / "w.npz", **TENSORS)
    done = archc("compile", model, "-o", tmp_path / "m.onnx", "--weights", tmp_path / "w.npz", "--weights-link")
    assert done.returncode == 1 and "archc: error: --weights-link needs a .safetensors file" in done.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_another_file_in_the_way_is_an_error(archc, model, tmp_path):
    weights = save(tmp_path / "store" / "w.safetensors")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "w.safetensors").write_bytes(b"something else")
    done = archc("compile", model, "-o", tmp_path / "out" / "m.onnx", "--weights", weights, "--weights-link")
    assert done.returncode == 1 and "exists and is another file" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["w.safetensors"]


def test_a_symlink_is_never_used(archc, model, tmp_path):
    weights = save(tmp_path / "store" / "w.safetensors")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "w.safetensors").symlink_to(weights)
    done = archc("compile", model, "-o", tmp_path / "out" / "m.onnx", "--weights", tmp_path / "out" / "w.safetensors",
                 "--weights-link")
    assert done.returncode == 1 and "symbolic link" in done.stderr
    assert not (tmp_path / "out" / "m.onnx").exists()


def test_across_filesystems_is_a_clear_error_and_leaves_nothing(archc, model, tmp_path, monkeypatch):
    weights = save(tmp_path / "store" / "w.safetensors")
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    out.write_bytes(b"previous")

    def cross_device(src, dst, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", cross_device)
    done = archc("compile", model, "-o", out, "--weights", weights, "--weights-link")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("archc: error: cannot hard-link")
    assert "different filesystems" in done.stderr and "same filesystem" in done.stderr
    assert "drop --weights-link" in done.stderr and "Traceback" not in done.stderr
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]


def test_a_failed_write_removes_the_link_it_made(archc, model, tmp_path, monkeypatch):
    from archlang.backends import onnx_file
    weights = save(tmp_path / "store" / "w.safetensors")
    out = tmp_path / "out" / "m.onnx"

    def broken(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_file, "_write_embedded", broken)
    done = archc("compile", model, "-o", out, "--weights", weights, "--weights-link")
    assert done.returncode != 0
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_output_named_like_the_weights_is_refused(archc, model, tmp_path):
    weights = save(tmp_path / "w.safetensors")
    done = archc("compile", model, "-o", tmp_path / "w.safetensors", "--weights", weights, "--weights-link")
    assert done.returncode == 1 and "replace the weights" in done.stderr
    assert weights.read_bytes()[:8] != b""
    save_file(TENSORS, str(tmp_path / "check.safetensors"))
    assert weights.read_bytes() == (tmp_path / "check.safetensors").read_bytes()


def test_unaligned_offsets_load(archc, tmp_path):
    """safetensors writers pad the header to 8 bytes, but the format does not require it:
    onnxruntime reads external data at any offset (it maps only page-aligned ones)."""
    import struct
    (tmp_path / "m.arch").write_text("axis batch\naxis a = 3, b = 2\n"
                                     "model U(x: f32[batch, a]) -> f32[batch, b] {\n"
                                     "  param w: [a, b] from \"w\" as [b, a]\n  param v: [a, b] from \"v\"\n"
                                     "  return x @ w + x @ v\n}\n")
    w, v = TENSORS["w"].T.copy(), TENSORS["w"] * 2
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                         "v": {"dtype": "F32", "shape": [3, 2], "data_offsets": [24, 48]}}).encode()
    header += b" " * (-len(header) % 8 + 3)  # every tensor at an odd offset
    (tmp_path / "w.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + w.tobytes() + v.tobytes())
    done = archc("compile", "m.arch", "-o", "m.onnx", "--weights", "w.safetensors", "--weights-link")
    assert done.returncode == 0 and "2 tensors linked" in done.stderr, done.stderr
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    x = INPUTS["x"]
    (y,) = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(y, x @ w.T + x @ v, rtol=1e-6)


def test_slices_of_a_packed_weight_stay_linked(archc, tmp_path):
    """-O2 slices a packed qkv weight per projection (unstack-linear): linked, the slices are
    Gathers of the stored tensor in the graph (nothing copied); embedded, they are stored apart."""
    path = tmp_path / "unstack.arch"
    path.write_text("""
axis batch
axis three = 3, heads = 2, head = 4, embed = 5
model U(e: f32[batch, embed]) -> (y: f32[batch, heads, head]) {
  param m: [three, heads, head] from "m" as [(three, heads, head)]
  param qkv: [embed, three, heads, head] from "attn.qkv" as [(three, heads, head), embed]
  q, k, v = unstack(e @ qkv + m over three)
  return q * k + v
}
""")
    weights = tmp_path / "u.safetensors"
    save_file({k: TENSORS[k] for k in ("m", "attn.qkv")}, str(weights))
    done = archc("compile", path, "-o", tmp_path / "linked.onnx", "--weights", weights, "--weights-link")
    assert done.returncode == 0, done.stderr
    assert "2 tensors linked in u.safetensors (1 through a Transpose)" in done.stderr
    linked = onnx.load(str(tmp_path / "linked.onnx"), load_external_data=False)
    inline = [t for t in linked.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert all(np.prod(t.dims) <= 3 for t in inline)  # indices and shapes: no weight bytes copied
    embedded = archc("compile", path, "-o", tmp_path / "embedded.onnx", "--weights", weights)
    assert embedded.returncode == 0, embedded.stderr
    m = onnx.load(str(tmp_path / "embedded.onnx"))
    assert {"qkv.folded", "qkv.folded2", "qkv.folded3"} <= {t.name for t in m.graph.initializer}
    feed = {"e": INPUTS["e"]}
    got = [ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]).run(None, feed)[0]
           for f in ("linked.onnx", "embedded.onnx")]
    np.testing.assert_array_equal(got[0], got[1])
    qkv = TENSORS["attn.qkv"].reshape(3, 2, 4, 5)
    q, k, v = (np.einsum("be,hde->bhd", INPUTS["e"], qkv[i]) + TENSORS["m"].reshape(3, 2, 4)[i] for i in range(3))
    np.testing.assert_allclose(got[0], q * k + v, rtol=1e-5, atol=1e-5)
