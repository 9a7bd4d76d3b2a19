"""fuse-rotary (compiler/passes/rules/rotary.py): the halves of an `unstack` turned by cosines
and sines and stacked back -> one `rotary` op (compiler/ops/rotary.py); the fused graph
computes what -O0 computes, on both backends and in both ONNX forms.

Cases: 1. LLaMA's queries and keys, every layer, and no transpose left around them at -O2;
2. products and sums written in any operand order, a (batch, heads, seq) layout and
per-batch tables also fuse; 3. declined, with the reason: halves swapped, halves of two
unstacks, stacked over another axis, tables that broadcast, cosines and sines of different
axes, a product read elsewhere; 4. the type rule's errors; 5. ONNX: `RotaryEmbedding` where
the layout allows it at opset 23, the Gather form otherwise, at opset 17 and when asked.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler import ops
from archlang.compiler.axes import Axis, Size, TensorType
from archlang.compiler.diagnostics import CompileError, SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ops import rotary
from archlang.compiler.passes import PassContext, optimize

from conftest import EXAMPLES
from pass_checks import assert_matches, normal_inputs

SOURCE = """
axis batch, seq
axis heads = 2, two = 2, half = 3, extra = 2, pair = 2
model M(x: f32[batch, seq, heads, two, half], y: f32[batch, heads, seq, two, half],
        c: f32[seq, half], s: f32[seq, half], cb: f32[batch, seq, half], sb: f32[batch, seq, half],
        ce: f32[seq, extra, half], h: f32[half])
    -> (a: f32[batch, seq, heads, two, half], b: f32[two, batch, heads, seq, half],
        d: f32[two, batch, seq, heads, half], e: f32[two, batch, seq, heads, half], f: f32[two, batch, seq, heads, half],
        g: f32[two, batch, seq, heads, half, extra], k: f32[two, batch, seq, heads, half],
        p: f32[two, batch, seq, heads, half], t: f32[batch, seq, heads, half], q: f32[pair, batch, seq, heads, half]) {
  x1, x2 = unstack(x over two)
  y1, y2 = unstack(y over two)
  a = stack(c * x1 - x2 * s, s * x1 + x2 * c over two)
  b = stack(y1 * c - y2 * s, y2 * c + y1 * s over two)
  d = stack(x1 * cb - x2 * sb, x2 * cb + x1 * sb over two)
  e = stack(x2 * c - x1 * s, x1 * c + x2 * s over two)
  f = stack(x1 * c - y2 * s, y2 * c + x1 * s over two)
  g = stack(x1 * ce - x2 * ce, x2 * ce + x1 * ce over two)
  k = stack(x1 * c - x2 * h, x2 * c + x1 * h over two)
  t = x1 * c
  p = stack(t - x2 * s, x2 * c + x1 * s over two)
  q = stack(x1 * c - x2 * s, x2 * c + x1 * s over pair)
  return a, b, d, e, f, g, k, p, t, q
}
"""
FUSE = ["fuse-rotary", "simplify-algebra", "eliminate-dead-nodes"]
SIZES = {"batch": 2, "seq": 5}


def _load(write_arch):
    return load_graph(str(write_arch(SOURCE)), SourceCache(), {})


def test_llama_rotates_queries_and_keys_in_one_op_each():
    graph = load_graph(str(EXAMPLES / "llama.arch"), SourceCache(), {"layers": "2"})
    report = optimize(graph, 2)
    assert report.counts()["rotary"] == 4
    fused = [n for n in graph.nodes if n.op == "rotary"]
    assert len(fused) == 4 and not any(n.op in ("stack", "unstack") for n in graph.nodes)
    assert [n.outputs[0].type.names[-2:] for n in fused] == [("two", "half")] * 4
    users = graph.users()
    # the transpose back to stack's pair-first order cancels against assign-layouts' one
    assert all(u.op in ("attention", "rename") for n in fused for u in users[n.outputs[0].id])
    params = load_params(graph, None, seed=1)
    model = to_onnx(graph, params)
    assert [n.op_type for n in model.graph.node].count("RotaryEmbedding") == 4


def test_rotary_fuses_in_any_operand_order_and_declines_with_reasons(write_arch):
    graph = _load(write_arch)
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=FUSE, ctx=ctx)
    assert report.counts()["rotary"] == 3
    outputs = dict(graph.outputs)
    assert outputs["a"].producer.op == "rotary"  # declared in x's order: the transposes cancel
    for name in "bd":
        root = outputs[name].producer
        assert root.op == "transpose" and root.inputs[0].producer.op == "rotary", name
    text = ctx.tracer.report()
    assert "the halves are swapped: the first term turns the `unstack`'s second slice" in text
    assert "the two halves come from different `unstack`s" in text
    assert "the halves are unstacked over `two` but stacked over `pair`" in text
    assert "the cosines or sines carry `extra`, which the halves lack" in text
    assert "the cosines f32[seq, half=3] and the sines f32[half=3] have different axes" in text
    assert "the `mul` result is also an output of the graph" in text


@pytest.mark.parametrize("standard, opset, expected", [(True, 23, 2), (False, 23, 0), (True, 17, 0)])
def test_fused_graph_matches_O0_in_both_onnx_forms(write_arch, monkeypatch, standard, opset, expected):
    monkeypatch.setattr(rotary, "ONNX_STANDARD", standard)
    reference = _load(write_arch)
    inputs = normal_inputs(reference, SIZES)
    want = run_graph(reference, {}, inputs)
    fused = _load(write_arch)
    optimize(fused, only=FUSE)
    model = to_onnx(fused, {}, opset)
    kinds = [n.op_type for n in model.graph.node]
    # a (position ids) and d (per-batch tables); b's (batch, heads, seq) layout takes the Gather form
    assert kinds.count("RotaryEmbedding") == expected
    assert_matches(want, fused, {}, inputs, model)


@pytest.mark.parametrize("standard", [True, False])
def test_llama_matches_O0_with_either_onnx_form(monkeypatch, standard):
    monkeypatch.setattr(rotary, "ONNX_STANDARD", standard)
    sets = {"layers": "2", "embed": "64", "heads": "4", "kv_heads": "2", "inter": "128", "vocab": "100"}
    reference = load_graph(str(EXAMPLES / "llama.arch"), SourceCache(), sets)
    params = load_params(reference, None, seed=2)
    inputs = {"input_ids": np.random.default_rng(2).integers(0, 100, size=(2, 6))}
    want = run_graph(reference, params, inputs)
    fused = load_graph(str(EXAMPLES / "llama.arch"), SourceCache(), sets)
    optimize(fused, 2)
    model = to_onnx(fused, params)
    assert [n.op_type for n in model.graph.node].count("RotaryEmbedding") == (4 if standard else 0)
    assert_matches(want, fused, params, inputs, model, rtol=1e-4, atol=1e-5)


def _t(dtype: str, *axes: tuple[str, int]) -> TensorType:
    return TensorType(dtype, tuple(Axis(n, Size.of(k)) for n, k in axes))


@pytest.mark.parametrize("x, cos, sin, message", [
    (_t("f32", ("s", 4), ("two", 3), ("h", 2)), _t("f32", ("s", 4), ("h", 2)), _t("f32", ("s", 4), ("h", 2)),
     "`rotary` turns pairs, but the pair axis `two` has size 3"),
    (_t("f32", ("s", 4), ("h", 2)), _t("f32", ("h", 2)), _t("f32", ("h", 2)), "the rotated tensor has no axis `two`"),
    (_t("f32", ("s", 4), ("two", 2), ("h", 2)), _t("f32", ("two", 2), ("h", 2)), _t("f32", ("two", 2), ("h", 2)),
     "the cosines and sines carry `two`, which the halves of"),
    (_t("f32", ("s", 4), ("two", 2), ("h", 2)), _t("f32", ("s", 4), ("h", 2)), _t("f32", ("h", 2)),
     "have different axes"),
    (_t("f32", ("s", 4), ("two", 2), ("h", 2)), _t("f32", ("s", 5), ("h", 2)), _t("f32", ("s", 5), ("h", 2)),
     "axis `s` is 5 in one operand but 4 in another"),
    (_t("i64", ("s", 4), ("two", 2), ("h", 2)), _t("i64", ("h", 2)), _t("i64", ("h", 2)),
     "`rotary` needs floating-point operands, not i64"),
])
def test_type_rule_names_the_problem(x, cos, sin, message):
    with pytest.raises(CompileError, match=re.escape(message)):
        ops.get("rotary").infer([x, cos, sin], {"pair": "two"}, None)
