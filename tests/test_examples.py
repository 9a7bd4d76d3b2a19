"""Every examples/*.arch compiles, exports valid ONNX, and runs in onnxruntime to the NumPy
reference's numbers.

Fast: each example at its small `--set` variant (SMALL below), at opset 23 and 17, on two
sizes of its symbolic axes through one session. Slow (`-m slow`): each example at its full
default size, batch 2 and seq 32, and the written file passes `onnx.checker`'s full check.
An example without an entry in SMALL is tested at full size only.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import compile_to_file
from archlang.compiler.axes import DTYPES, FLOAT_DTYPES
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ir import Graph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.arch"))
TOL = dict(rtol=1e-5, atol=1e-5)

# Small variants: example name -> `--set` values.
SMALL: dict[str, dict[str, str]] = {
    "mlp": {},
    "gpt2": {"layers": "2", "embed": "64", "heads": "4", "vocab": "100"},
    "packed_gpt2": {"layers": "2", "embed": "64", "heads": "4", "vocab": "100"},
    "vit": {"depth": "2", "embed": "64", "heads": "4", "height": "32", "width": "32", "classes": "10"},
    "bert": {"layers": "2", "embed": "64", "heads": "4", "vocab": "1000"},
    "llama": {"layers": "2", "embed": "64", "heads": "4", "kv_heads": "2", "inter": "128", "vocab": "100"},
    "albert": {"layers": "3", "emb": "32", "hidden": "64", "heads": "4", "inter": "128", "vocab": "1000"},
    "resnet50": {"height": "64", "width": "64", "p1": "8", "p2": "16", "p3": "32", "p4": "64", "classes": "10"},
    "mixer": {"height": "32", "width": "32", "ph": "8", "pw": "8", "embed": "64", "depth": "2", "classes": "10"},
    # Small already:
    "unet": {}, "se_mobile": {}, "alibi": {}, "t5_bias": {}, "swin_stages": {}, "looped": {},
    "moe": {}, "fftconv": {}, "rnn": {}, "linear_attention": {}, "gcn": {}, "gat": {}, "tokenformer": {}, "pointer": {}, "titans": {}, "landmark": {}, "hybrid": {},
}
# scatter_max lowers to ScatterND's max reduction, new in opset 18 (test_construct_gnn.py
# checks the error at 17).
NEEDS_OPSET_18 = {"gat"}

FULL_SYMBOLS = {"batch": 2, "default": 32}   # batch 2; seq (and any other open axis) 32
SMALL_SYMBOLS = [{"batch": 2, "default": 7}, {"batch": 1, "default": 12}]
INT_HIGH = 50                                 # integer inputs (token ids) in [0, 50)


def build(name: str, sets: Mapping[str, str]) -> Graph:
    return load_graph(str(EXAMPLES / f"{name}.arch"), SourceCache(), dict(sets))


def random_inputs(graph: Graph, symbols: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """Random inputs of the graph's types; each symbolic axis takes its size from `symbols`.
    Integers are in [0, INT_HIGH), and below every size they index (gather, scatter)."""
    rng = np.random.default_rng(seed)
    sizes = {s: symbols.get(s, symbols["default"]) for s in graph.symbols}

    def size_of(size) -> int:
        if size.is_static:
            return size.value
        return int(sum(coef * int(np.prod([sizes[s] for s in mono])) for mono, coef in size.terms))

    def high(v) -> int:
        bounds = [size_of(n.inputs[0].type.axis(n.attrs["axis"]).size) for n in graph.nodes
                  if n.op == "gather" and n.inputs[1] is v]
        bounds += [size_of(n.attrs["target"].size) for n in graph.nodes
                   if n.op.startswith("scatter_") and n.inputs[1] is v]
        return min(bounds + [INT_HIGH])

    out = {}
    for name, v in graph.inputs:
        shape = [size_of(a.size) for a in v.type.axes]
        dtype = np.dtype(DTYPES[v.type.dtype])
        if v.type.dtype in FLOAT_DTYPES:
            out[name] = rng.standard_normal(shape).astype(dtype)
        elif v.type.dtype == "bool":
            out[name] = rng.random(shape) < 0.5
        else:
            out[name] = rng.integers(0, high(v), shape).astype(dtype)
    return out


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare(sess: ort.InferenceSession, graph: Graph, params, inputs) -> None:
    want = run_graph(graph, params, inputs)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, inputs)))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        assert np.all(np.isfinite(want[k])), f"{k}: the NumPy reference is not finite"
        np.testing.assert_allclose(got[k], want[k], err_msg=f"output {k}", **TOL)


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


@pytest.mark.parametrize("name, opset", [(n, o) for n in NAMES if n in SMALL for o in (23, 17)
                                         if not (o < 18 and n in NEEDS_OPSET_18)])
def test_small_variant_onnx_matches_numpy(name, opset, tmp_path):
    graph = build(name, SMALL[name])
    params = load_params(graph, None, seed=seed_of(name))
    path = tmp_path / f"{name}.onnx"
    compile_to_file(graph, params, str(path), opset=opset)
    onnx.checker.check_model(str(path), full_check=True)
    sess = session(path)
    for i, symbols in enumerate(SMALL_SYMBOLS):  # one session, several sizes of the open axes
        compare(sess, graph, params, random_inputs(graph, symbols, seed_of(name) + i))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_full_size_onnx_matches_numpy(name, tmp_path):
    graph = build(name, {})
    params = load_params(graph, None, seed=seed_of(name))
    path = tmp_path / f"{name}.onnx"
    compile_to_file(graph, params, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    compare(session(path), graph, params, random_inputs(graph, FULL_SYMBOLS, seed_of(name)))


def test_every_example_is_tested():
    """The examples folder is globbed; a new file is picked up at full size (slow) at least."""
    assert {"mlp", "gpt2", "vit"} <= set(NAMES)
    assert set(SMALL) <= set(NAMES), f"SMALL names missing examples: {set(SMALL) - set(NAMES)}"
