"""The ONNX file writer: embedded weights, external data past the protobuf limit, atomicity."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from archlang.backends import onnx_file
from archlang.backends.onnx_export import compile_to_file, to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params

SOURCE = """
axis batch
axis din = 16, dout = 8
model M(x: f32[batch, din]) -> f32[batch, dout] {
  param w: [din, dout] = normal(1.0)
  param b: [dout] = normal(1.0)
  return relu(x @ w + b)
}
"""


@pytest.fixture
def graph_and_params(tmp_path):
    path = tmp_path / "m.arch"
    path.write_text(SOURCE)
    g = load_graph(str(path), SourceCache())
    return g, load_params(g, None, seed=3)


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_streamed_file_equals_protobuf_serialisation(graph_and_params, tmp_path):
    g, params = graph_and_params
    path = tmp_path / "m.onnx"
    compile_to_file(g, params, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    loaded = onnx.load(str(path))
    in_memory = to_onnx(g, params)
    assert loaded.SerializeToString() == in_memory.SerializeToString()


def test_external_data_past_the_limit(graph_and_params, tmp_path, monkeypatch):
    g, params = graph_and_params
    monkeypatch.setattr(onnx_file, "PROTOBUF_LIMIT", 100)  # force the >2 GB path on a tiny model
    path = tmp_path / "m.onnx"
    compile_to_file(g, params, str(path))
    data = tmp_path / "m.onnx.data"
    assert data.is_file()
    model = onnx.load(str(path), load_external_data=False)
    locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"m.onnx.data"}
    onnx.checker.check_model(str(path), full_check=True)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    expected = np.maximum(x @ params["w"] + params["b"], 0)
    np.testing.assert_allclose(run(path, x), expected, rtol=1e-5, atol=1e-5)


def test_same_input_same_bytes(graph_and_params, tmp_path):
    g, params = graph_and_params
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    compile_to_file(g, params, str(a))
    compile_to_file(g, params, str(b))
    assert a.read_bytes() == b.read_bytes()


def test_failed_write_leaves_previous_file(graph_and_params, tmp_path, monkeypatch):
    g, params = graph_and_params
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(onnx_file, "_write_embedded", boom)
    with pytest.raises(OSError):
        compile_to_file(g, params, str(path))
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.arch", "m.onnx"]  # no temporary left
