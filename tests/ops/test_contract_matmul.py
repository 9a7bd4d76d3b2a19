"""`@` lowered to MatMul (compiler/ops/contract.py): each shape of contraction against
`np.einsum` with hand-written subscripts, on the NumPy backend, onnxruntime and the
generated module, at two sizes of the symbolic axes (one ONNX session for both).

Cases: a dense layer (a 2-D weight), several contracted axes in another order than the
weight's, batch axes interleaved with kept ones (attention scores), two symbolic kept
axes merged (the reshape shape computed at run time), a weight on the left, a contraction
to a vector, and integers.
"""
from __future__ import annotations

import importlib.util
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from archlang.backends.numpy_codegen import emit_module, run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params

SOURCE = """
axis batch, seq, t
axis key ~ seq
axis e = 6, n = 5, heads = 2, head = 3, p = 4, p2 = 3
model M(x: {dt}[batch, seq, e], q: {dt}[batch, seq, heads, head], k: {dt}[batch, key, heads, head],
        z: {dt}[batch, seq, t, head], y: {dt}[head, batch, n], r: {dt}[batch, p, e]) ->
    (dense: {dt}[batch, seq, n], multi: {dt}[batch, seq, e], scores: {dt}[batch, seq, heads, key],
     merged: {dt}[batch, seq, t, n], left: {dt}[p2, batch, e], vec: {dt}[batch, seq]) {{
  param w: {dt}[e, n] = normal(1.0)
  param w2: {dt}[head, heads, e] = normal(1.0)
  param u: {dt}[e] = normal(1.0)
  param lw: {dt}[p2, p] = normal(1.0)
  return x @ w, (q @ w2 over heads, head), (q @ k over head), (z @ y over head), (lw @ r over p),
         (x @ u over e)
}}
"""

REFERENCE = {  # output -> (subscripts, operands)
    "dense": ("bse,en->bsn", ("x", "w")),
    "multi": ("bshd,dhe->bse", ("q", "w2")),
    "scores": ("bshd,bkhd->bshk", ("q", "k")),
    "merged": ("bstd,dbn->bstn", ("z", "y")),
    "left": ("qp,bpe->qbe", ("lw", "r")),
    "vec": ("bse,e->bs", ("x", "u")),
}


def _graph(dtype: str):
    text = textwrap.dedent(SOURCE.format(dt=dtype)).lstrip("\n")
    return load_graph("contract.arch", SourceCache(), {}, text=text)


def _inputs(graph, sizes: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in graph.inputs:
        shape = [a.size.value if a.size.is_static else sizes[str(a.size)] for a in v.type.axes]
        out[name] = rng.normal(size=shape).astype(np.float32)
    return out


def _expected(values: dict) -> dict:
    return {k: np.einsum(spec, *(values[n] for n in names)) for k, (spec, names) in REFERENCE.items()}


@pytest.mark.parametrize("dtype", ["f32", "i64"])
def test_contractions_match_einsum_on_every_backend(dtype, tmp_path):
    graph = _graph(dtype)
    params = load_params(graph, None, seed=1)
    if dtype == "i64":
        params = {k: np.round(v * 3).astype(np.int64) for k, v in params.items()}
    model = to_onnx(graph, params)
    ops = {n.op_type for n in model.graph.node}
    assert "Einsum" not in ops and "MatMul" in ops
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    path = tmp_path / "m.py"
    path.write_text(emit_module(graph))
    spec = importlib.util.spec_from_file_location("m", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for seed, sizes in enumerate([{"batch": 2, "seq": 3, "t": 4}, {"batch": 1, "seq": 5, "t": 2}]):
        inputs = _inputs(graph, sizes, seed)
        if dtype == "i64":
            inputs = {k: np.round(v * 3).astype(np.int64) for k, v in inputs.items()}
        want = _expected({**inputs, **{k.split(".")[-1]: v for k, v in params.items()}})
        got_numpy = run_graph(graph, params, inputs)
        got_onnx = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
        got_module = module.m(params, **inputs)
        for k, ref in want.items():
            for backend, got in (("numpy", got_numpy), ("onnx", got_onnx), ("module", got_module)):
                assert got[k].shape == ref.shape, (backend, k)
                np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-4, err_msg=f"{backend} {k} {sizes}")


def test_small_integers_keep_einsum():
    """i8 and u8: onnxruntime's MatMul does not take them, so they stay one Einsum."""
    src = "axis a = 2, b = 3\nmodel M(x: i8[a, b]) -> i8[a] {\n  param w: i8[b] = zeros\n  return x @ w\n}\n"
    graph = load_graph("i8.arch", SourceCache(), {}, text=src)
    model = to_onnx(graph, load_params(graph, None, seed=0))
    assert [n.op_type for n in model.graph.node] == ["Einsum"]
