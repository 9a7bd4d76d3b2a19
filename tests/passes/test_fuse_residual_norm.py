"""fuse-residual-norm (compiler/passes/rules/residual_norm.py): `norm(a + b)` -> one
`add_layernorm` / `add_rmsnorm` op whose second result serves the other reads of the sum.

Cases: 1. the sum is also read by a node written before the norm (the residual stream: the
engine's `shares_interior` redirects it and restores the order); 2. through the rename a block boundary puts before the norm, with the
sum used by the norm only; 3. a broadcast addend (`x + p`, p over [seq, e]); 4. declined:
the rename is used elsewhere, and the sum feeds the norm's own weight (redirecting it would
make a cycle). The fused graph matches -O0 on both backends, in both ONNX forms.
"""
from __future__ import annotations

import pytest

from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ops import add_norm
from archlang.compiler.passes import PassBug, PassContext, optimize
from archlang.compiler.passes.rewrite import Op, Rule, Var, apply_rules

from pass_checks import assert_matches, reference_and_optimised

SOURCE = """
axis batch, seq
axis e = 8
axis d ~ e
model M(x: f32[batch, seq, e], y: f32[batch, seq, e], p: f32[seq, e], xe: f32[e], ye: f32[e])
    -> (a: f32[batch, seq, e], s: f32[batch, seq, e], r: f32[batch, seq, d], c: f32[batch, seq, d],
        q: f32[batch, seq, d], u: f32[e]) {
  param w: [e] = normal(1.0)
  param bias: [e] = normal(1.0)
  param wd: [d] = normal(1.0)
  h = x + y
  h2 = h * 2.0
  r = rmsnorm(rename(y + x, e -> d), wd over d)
  c = layernorm(rename(x + p, e -> d) over d)
  q = rename(x + x, e -> d)
  g = xe + ye
  return layernorm(h, w, bias, eps=1e-3 over e), h2, r, c, rmsnorm(q, wd over d) + q,
         layernorm(g, g * 2.0 over e)
}
"""
FUSE = ["fuse-residual-norm", "eliminate-dead-nodes"]


def _load(write_arch):
    return load_graph(str(write_arch(SOURCE)), SourceCache(), {})


def test_sums_feeding_a_norm_become_one_op_with_two_results(write_arch):
    graph = _load(write_arch)
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=FUSE, ctx=ctx)
    assert report.counts() == {"residual-layernorm": 2, "residual-rmsnorm": 1}
    fused = {n.op: n for n in graph.nodes if n.op.startswith("add_")}
    assert sorted(fused) == ["add_layernorm", "add_rmsnorm"]
    (shared,) = [n for n in graph.nodes if n.op == "add_layernorm" and n.attrs.get("eps") == 1e-3]
    outputs = dict(graph.outputs)
    assert outputs["a"] is shared.outputs[0]
    # `h * 2.0`, written before the norm, now reads the op's sum and moved after it
    (double,) = [n for n in graph.nodes if n.op == "mul" and n.inputs[0].producer is shared]
    assert double.inputs[0] is shared.outputs[1]
    assert graph.nodes.index(double) > graph.nodes.index(shared)
    assert [n.op for n in graph.nodes].count("add") == 3  # x + x, xe + ye, and `rmsnorm(q) + q`
    text = ctx.tracer.report()
    assert "the `rename` result is also used outside the pattern" in text
    assert "the `add` result also feeds the pattern's other operands" in text


@pytest.mark.parametrize("skip_ops", [False, True])
@pytest.mark.parametrize("sizes", [{"batch": 2, "seq": 3}, {"batch": 1, "seq": 5}])
def test_fused_graph_matches_O0_on_both_backends(write_arch, monkeypatch, sizes, skip_ops):
    monkeypatch.setattr(add_norm, "ONNX_SKIP_NORM", skip_ops)
    fused, params, inputs, want = reference_and_optimised(lambda: _load(write_arch), FUSE, sizes)
    model = to_onnx(fused, params)
    contrib = sorted(n.op_type for n in model.graph.node if n.domain == "com.microsoft")
    # the broadcast `x + p` keeps Add + LayerNormalization
    assert contrib == (["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"] if skip_ops else [])
    assert_matches(want, fused, params, inputs, model, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset, target", [(17, "ort"), (23, "portable")])
def test_standard_ops_where_the_contrib_ops_do_not_apply(write_arch, monkeypatch, opset, target):
    monkeypatch.setattr(add_norm, "ONNX_SKIP_NORM", True)
    graph = _load(write_arch)
    optimize(graph, only=FUSE)
    model = to_onnx(graph, load_params(graph, None, seed=0), opset=opset, target=target)
    contrib = sorted(n.op_type for n in model.graph.node if n.domain == "com.microsoft")
    assert contrib == ([] if target == "portable" else ["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"])


# The engine side: a rule naming an interior node in `shares_interior` must replace its
# escaping results; one that forgets is a bug in archc, caught where it happens.
class ForgetsToShare(Rule):
    name, shares_interior = "forgets", ("sum",)
    pattern = Op("neg", Op("add", Var("a"), Var("b"), name="sum"))

    def rewrite(self, m, b):
        return b.emit1("neg", [m["a"]])


def test_a_shared_value_without_replacement_is_a_pass_bug(write_arch):
    src = "axis n = 3\nmodel M(a: f32[n], b: f32[n]) -> (x: f32[n], y: f32[n]) {\n  s = a + b\n  return -s, s\n}\n"
    graph = load_graph(str(write_arch(src, "share.arch")), SourceCache(), {})
    with pytest.raises(PassBug, match="no replacement for shared"):
        apply_rules(graph, [ForgetsToShare()], PassContext())
