"""unstack-linear (compiler/passes/rules/unstack_linear.py): a dense layer whose output is
unstacked along an output axis of its weight becomes one dense layer per slice (the weight
and bias sliced instead of the activations); the result computes what -O0 computes, on
both backends, and `archc compile` stores the slices apart.

Cases: 1. a packed weight with a bias over the unstacked axis (GPT-2's and ViT's qkv);
2. a bias without that axis (added to every slice); 3. no bias; 4. declined: the axis is
the input's (a batched unstack), the linear's result is also read elsewhere.
"""
from __future__ import annotations

from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph
from archlang.compiler.passes import PassContext, optimize
from archlang.compiler.weights_fold import fold_parameters

from pass_checks import assert_matches, reference_and_optimised

SOURCE = """
axis batch, seq
axis e = 6, three = 3, heads = 2, head = 4, two = 2
model M(x: f32[batch, seq, e], z: f32[batch, seq, two, e]) ->
    (a: f32[batch, seq, heads, head], b: f32[batch, seq, heads, head], c: f32[batch, seq, heads, head],
     d: f32[batch, seq, heads, head], f: f32[batch, seq, heads, head], g: f32[batch, seq, three, heads, head]) {
  param w: [e, three, heads, head] = normal(1.0)
  param bias: [three, heads, head] = normal(1.0)
  param w_b: [e, three, heads, head] = normal(1.0)
  param b_shared: [heads, head] = normal(1.0)
  param w_c: [e, three, heads, head] = normal(1.0)
  param w2: [e, heads, head] = normal(1.0)
  param w_k: [e, three, heads, head] = normal(1.0)
  q, k, v = unstack(x @ w + bias over three)
  q2, k2, v2 = unstack(x @ w_b + b_shared over three)
  p, r, s = unstack(x @ w_c over three)
  u, t = unstack(z @ w2 over two)
  kept = x @ w_k + bias
  m, n, o = unstack(kept over three)
  return q + k * v, q2 - k2 * v2, p * r + s, u + t, m + n + o, kept
}
"""
FUSE = ["fuse-linear", "unstack-linear", "eliminate-dead-nodes"]


def _load(write_arch):
    path = str(write_arch(SOURCE))
    return lambda: load_graph(path, SourceCache(), {})


def test_unstacked_projections_become_one_linear_per_slice(write_arch):
    graph = _load(write_arch)()
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=FUSE, ctx=ctx)
    assert report.counts()["unstack-linear"] == 3  # a, b and c
    unstacks = [n for n in graph.nodes if n.op == "unstack"]
    assert sorted(n.inputs[0].producer.op for n in unstacks) == ["linear", "linear"] + ["param"] * 4
    text = ctx.tracer.report()
    assert "`two` is not an output axis of the weight" in text
    assert "also an output of the graph" in text  # `kept`: the wide product is computed anyway


def test_sliced_projections_match_O0_and_fold_into_initializers(write_arch):
    load = _load(write_arch)
    graph, params, inputs, want = reference_and_optimised(load, 2, {"batch": 2, "seq": 3})
    assert sum(n.op == "unstack" and n.inputs[0].producer.op == "param" for n in graph.nodes) == 4
    assert_matches(want, graph, params, inputs, rtol=1e-5, atol=1e-5)
    bound = fold_parameters(graph, params)  # as `archc compile` does: the slices are stored apart
    assert {"w.folded", "bias.folded", "w_b.folded", "w_c.folded"} <= set(bound)
    model = to_onnx(graph, bound)
    weights = {i.name for i in model.graph.initializer}
    gathers = [n for n in model.graph.node if n.op_type == "Gather"]
    assert len(gathers) == 5 and not any(n.input[0] in weights for n in gathers)  # d's and kept's activations
    assert_matches(want, graph, bound, inputs, model, rtol=1e-5, atol=1e-5)
