"""Ordering along a named axis: `topk`, `argmax`, `argmin` (compiler/ops/sort.py).

Each program runs through the NumPy backend, onnxruntime at opsets 23 and 17, and the
generated module (the `check` helper of test_core_ops), and the NumPy result is compared
with a reference written here: a plain Python sort of each row by (value, position), so
ties are checked to go to the lower position, as ONNX TopK specifies. Inputs are drawn
with many ties (small integers, and floats rounded to whole numbers).
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

from archlang.backends.numpy_codegen import RunError, emit_module, run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.driver import load_params

from test_core_ops import (SIZES, _seed_per_test, check, compile_arch, compile_error,  # noqa: F401 (fixture)
                           ints, randn)

DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64, "i32": np.int32,
          "u8": np.uint8}


def topk_by_hand(x: np.ndarray, k: int, axis: int, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each row along `axis` sorted in Python by (value, position), best first."""
    rows = np.moveaxis(x, axis, -1)
    flat = rows.reshape(-1, rows.shape[-1])
    idx = np.empty((flat.shape[0], k), dtype=np.int64)
    for r, row in enumerate(flat.tolist()):  # Python numbers: no unsigned wrap-around
        order = sorted(range(len(row)), key=lambda j: (-row[j] if largest else row[j], j))
        idx[r] = order[:k]
    idx = np.moveaxis(idx.reshape(rows.shape[:-1] + (k,)), -1, axis)
    return np.take_along_axis(x, idx, axis=axis), idx


def tied(shape, dtype) -> np.ndarray:
    """Random values with many ties: whole numbers in a small range."""
    if np.issubdtype(dtype, np.unsignedinteger):
        return ints(*shape, low=0, high=4, dtype=dtype)
    if np.issubdtype(dtype, np.integer):
        return ints(*shape, low=-3, high=3, dtype=dtype)
    return np.round(randn(*shape, scale=1.5)).astype(dtype)


TOPK = """
    axis batch, seq
    axis expert = 5
    model M(x: {dt}[batch, expert, seq]) -> (vals: {dt}[batch, slot, seq], idx: i64[batch, slot, seq]) {{
      vals, idx = topk(x, k={k}{extra} over expert -> slot)
      return vals, idx
    }}
"""


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("dt", ["f32", "f64", "i64"])
def test_topk_matches_a_stable_sort(dt, k, tmp_path):
    runs = [{"x": tied((s["batch"], 5, s["seq"]), DTYPES[dt])} for s in SIZES]
    res = check(TOPK.format(dt=dt, k=k, extra=""), runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        vals, idx = topk_by_hand(r["x"], k, axis=1)
        np.testing.assert_array_equal(out["idx"], idx)
        np.testing.assert_array_equal(out["vals"], vals)


@pytest.mark.parametrize("dt", ["f16", "i32", "u8"])
def test_topk_other_dtypes(dt, tmp_path):
    runs = [{"x": tied((s["batch"], 5, s["seq"]), DTYPES[dt])} for s in SIZES]
    res = check(TOPK.format(dt=dt, k=3, extra=""), runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        vals, idx = topk_by_hand(r["x"], 3, axis=1)
        np.testing.assert_array_equal(out["idx"], idx)
        np.testing.assert_array_equal(out["vals"], vals)


@pytest.mark.parametrize("dt", ["f32", "i64", "u8"])
def test_topk_smallest(dt, tmp_path):
    runs = [{"x": tied((s["batch"], 5, s["seq"]), DTYPES[dt])} for s in SIZES]
    res = check(TOPK.format(dt=dt, k=2, extra=", largest=0"), runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        vals, idx = topk_by_hand(r["x"], 2, axis=1, largest=False)
        np.testing.assert_array_equal(out["idx"], idx)
        np.testing.assert_array_equal(out["vals"], vals)


def test_topk_of_distinct_values_is_argsort(tmp_path):
    """Without ties, the stable-sort reference is np.argsort of the negated values."""
    runs = [{"x": randn(s["batch"], 5, s["seq"], dtype=np.float64)} for s in SIZES]
    res = check(TOPK.format(dt="f64", k=3, extra=""), runs)
    for out, r in zip(res.outputs, runs):
        idx = np.argsort(-r["x"], axis=1, kind="stable")[:, :3]
        np.testing.assert_array_equal(out["idx"], idx)
        np.testing.assert_array_equal(out["vals"], np.take_along_axis(r["x"], idx, axis=1))


def test_topk_of_a_symbolic_axis(tmp_path):
    """Any k >= 1 compiles along an axis of run-time size; too short an axis fails at run time."""
    src = """
        axis batch, seq
        axis embed = 3
        model M(x: f32[batch, seq, embed]) -> (vals: f32[batch, best, embed], idx: i64[batch, best, embed]) {
          vals, idx = topk(x, k=3 over seq -> best)
          return vals, idx
        }
    """
    runs = [{"x": tied((2, n, 3), np.float32)} for n in (3, 7)]
    res = check(src, runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        vals, idx = topk_by_hand(r["x"], 3, axis=1)
        np.testing.assert_array_equal(out["idx"], idx)
        np.testing.assert_array_equal(out["vals"], vals)
    with pytest.raises(RunError, match=r"`topk`.*k is 3 but the axis has 2 entries"):
        run_graph(res.graph, res.params, {"x": randn(2, 2, 3)})


def test_topk_takes_k_from_a_declared_axis():
    src = """
        axis batch
        axis expert = 6, slot = 2
        model M(x: f32[batch, expert]) -> (vals: f32[batch, slot], idx: i64[batch, slot]) {
          vals, idx = topk(x over expert -> slot)
          return vals, idx
        }
    """
    runs = [{"x": tied((4, 6), np.float32)}]
    res = check(src, runs)
    vals, idx = topk_by_hand(runs[0]["x"], 2, axis=1)
    np.testing.assert_array_equal(res.outputs[0]["idx"], idx)
    np.testing.assert_array_equal(res.outputs[0]["vals"], vals)


def test_topk_indices_gather_a_table(tmp_path):
    """The indices select rows of a table along the old axis (the mixture-of-experts pattern)."""
    src = """
        axis batch
        axis expert = 4, embed = 3
        model M(gate: f32[batch, expert], table: f32[expert, embed]) -> f32[batch, slot, embed] {
          vals, idx = topk(gate, k=2 over expert -> slot)
          return gather(table, idx over expert) * vals
        }
    """
    runs = [{"gate": randn(3, 4), "table": randn(4, 3)}]
    res = check(src, runs, module_dir=tmp_path)
    vals, idx = topk_by_hand(runs[0]["gate"], 2, axis=1)
    np.testing.assert_array_equal(res.out, runs[0]["table"][idx] * vals[..., None])


def test_the_module_sorts_once_and_onnx_has_one_topk():
    graph = compile_arch(TOPK.format(dt="f32", k=2, extra=""))
    body = emit_module(graph).split("\ndef m(", 1)[1]
    assert len(re.findall(r"\btopk\(", body)) == 1, body
    params = load_params(graph, None, seed=0)
    for opset in (17, 23):
        model = to_onnx(graph, params, opset=opset)
        onnx.checker.check_model(model, full_check=True)
        kinds = [n.op_type for n in model.graph.node]
        assert kinds.count("TopK") == 1 and "GatherElements" not in kinds, kinds
        (topk,) = [n for n in model.graph.node if n.op_type == "TopK"]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in topk.attribute}
        assert attrs == {"axis": 1, "largest": 1, "sorted": 1}


# ---- argmax and argmin -------------------------------------------------------------

@pytest.mark.parametrize("dt", ["f32", "i64"])
def test_argmax_argmin_first_of_ties(dt, tmp_path):
    src = f"""
        axis batch, seq
        axis vocab = 6
        model M(x: {dt}[batch, vocab, seq]) -> (hi: i64[batch, seq], lo: i64[batch, seq]) {{
          return argmax(x over vocab), argmin(x over vocab)
        }}
    """
    runs = [{"x": tied((s["batch"], 6, s["seq"]), DTYPES[dt])} for s in SIZES]
    res = check(src, runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        np.testing.assert_array_equal(out["hi"], topk_by_hand(r["x"], 1, axis=1)[1][:, 0])
        np.testing.assert_array_equal(out["lo"], topk_by_hand(r["x"], 1, axis=1, largest=False)[1][:, 0])


# ---- type errors -------------------------------------------------------------------

ERROR_SOURCE = """
axis batch
axis expert = 4, slot3 = 3
model M(x: f32[batch, expert], p: bool[batch, expert]) -> f32[batch, slot] {{
  vals, idx = {call}
  return vals
}}
"""

ERRORS = {  # call -> words the message must contain
    "topk(x, k=5 over expert -> slot)": ["`k` is 5", "`expert` has only 4"],
    "topk(x, k=2.5 over expert -> slot)": ["`k` must be a whole number", "2.5"],
    "topk(x, k=0 over expert -> slot)": ["`k` must be a whole number of at least 1, not 0"],
    "topk(x, k=1e30 over expert -> slot)": ["`k` is 1e+30, too large"],
    'topk(x, k="two" over expert -> slot)': ["`k` must be a whole number"],
    "topk(x, k=2 over expert)": ["needs `over axis -> new_axis`"],
    "topk(x, k=2)": ["needs `over axis -> new_axis`"],
    "topk(x, expert -> slot, k=2)": ["axis mapping after `over`"],
    "topk(x over expert -> slot)": ["needs `k=`"],
    "topk(x, k=2 over embed -> slot)": ["no axis `embed`"],
    "topk(x, k=2 over expert -> batch)": ["already has an axis `batch`"],
    "topk(x, k=2 over expert -> slot3)": ["`slot3` size 2", "declared as 3"],
    "topk(p, k=2 over expert -> slot)": ["numeric", "bool"],
    "topk(x, k=2, largest=2 over expert -> slot)": ["`largest` must be 1", "or 0"],
    "topk(x, k=2, smallest=1 over expert -> slot)": ["no keyword `smallest`"],
    "topk(x, x, k=2 over expert -> slot)": ["one tensor"],
    "topk(x, k=2 over (expert, batch) -> (slot, b2))": ["one axis"],
}


@pytest.mark.parametrize("call", list(ERRORS))
def test_topk_errors(call):
    err = compile_error(ERROR_SOURCE.format(call=call))
    d = err.diagnostics[0]
    for word in ERRORS[call]:
        assert word in d.message, f"message {d.message!r} should say {word!r}"
    assert d.span is not None and d.span.line == 4, d.span  # the `topk` line


@pytest.mark.parametrize("body, word", [("argmax(x over expert, batch)", "exactly one axis"),
                                        ("argmin(p over expert)", "bool"),
                                        ("argmax(x)", "`over`"),
                                        ("argmax(x over heads)", "heads")])
def test_argmax_errors(body, word):
    src = f"axis batch\naxis expert = 4\nmodel M(x: f32[batch, expert], p: bool[batch, expert]) -> i64[batch] {{\n  return {body}\n}}\n"
    d = compile_error(src).diagnostics[0]
    assert word in d.message, d.message
