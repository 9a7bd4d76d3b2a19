"""fuse-gated-mlp (compiler/passes/rules/gated_mlp.py): `act(x @ w_gate) * (x @ w_up)` -> one
`gated_linear` op; the fused graph computes what -O0 computes, on both backends.

Cases: 1. SwiGLU through the renames a `Linear` block adds (LLaMA's MLP); 2. GeGLU
(gelu_tanh) with the product's operands swapped and the weights stored in other orders;
3. weights of several output axes (relu); 4. declined: a projection with a bias, two
different inputs, a gate also read elsewhere.
"""
from __future__ import annotations

import pytest

from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph
from archlang.compiler.ops import gated
from archlang.compiler.passes import PassContext, optimize

from pass_checks import assert_matches, reference_and_optimised

SOURCE = """
axis batch, seq
axis e = 6, n = 5, heads = 2, head = 3
axis inter ~ n
model M(x: f32[batch, seq, e], z: f32[batch, seq, e])
    -> (a: f32[batch, seq, inter], b: f32[batch, seq, n], c: f32[batch, seq, n], d: f32[batch, seq, n],
        f: f32[batch, seq, heads, head], g: f32[batch, seq, n], k: f32[batch, seq, n]) {
  param wg: [e, n] = normal(1.0)
  param wu: [e, n] = normal(1.0)
  param wt: [n, e] = normal(1.0)
  param bg: [n] = normal(1.0)
  param hg: [heads, head, e] = normal(1.0)
  param hu: [heads, head, e] = normal(1.0)
  a = silu(rename(x @ wg, n -> inter)) * rename(x @ wu, n -> inter)
  b = (x @ wu) * gelu_tanh(x @ wt)
  c = gelu(x @ wg + bg) * (x @ wu)
  d = silu(x @ wg) * (z @ wu)
  gate = x @ wu
  return a, b, c, d, relu(x @ hg) * (x @ hu), silu(gate) * (x @ wg), gate
}
"""
FUSE = ["fuse-linear", "fuse-gated-mlp", "eliminate-dead-nodes"]


def _load(write_arch):
    return load_graph(str(write_arch(SOURCE)), SourceCache(), {})


def test_gated_projections_become_one_op(write_arch):
    graph = _load(write_arch)
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=FUSE, ctx=ctx)
    assert report.counts()["gated-mlp"] == 3
    fused = [n for n in graph.nodes if n.op == "gated_linear"]
    assert [n.attrs["act"] for n in fused] == ["silu", "gelu_tanh", "relu"]
    assert [p.producer.attrs["name"] for p in fused[1].inputs[1:]] == ["wt", "wu"]  # gate first, whatever the order
    outputs = dict(graph.outputs)
    assert outputs["a"].producer.op == "rename" and outputs["a"].producer.inputs[0].producer is fused[0]
    text = ctx.tracer.report()
    assert "the gate projection has a bias" in text
    assert "`x` would be two different values" in text
    assert "the `linear` result is also an output of the graph" in text


@pytest.mark.parametrize("concat", [False, True])
@pytest.mark.parametrize("sizes", [{"batch": 2, "seq": 3}, {"batch": 1, "seq": 4}])
def test_fused_graph_matches_O0_on_both_backends(write_arch, monkeypatch, sizes, concat):
    monkeypatch.setattr(gated, "ONNX_CONCAT", concat)
    fused, params, inputs, want = reference_and_optimised(lambda: _load(write_arch), FUSE, sizes)
    model = to_onnx(fused, params)
    ops = [n.op_type for n in model.graph.node]
    # two one-output-axis pairs run as one MatMul each; the [heads, head] pair stays two
    assert ops.count("Split") == (2 if concat else 0) and ops.count("Concat") == ops.count("Split")
    assert_matches(want, fused, params, inputs, model, rtol=1e-4, atol=1e-4)
