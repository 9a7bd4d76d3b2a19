"""fuse-linear (compiler/passes/rules/linear.py): `x @ w + b` with parameters w, b -> one
`linear` node; the fused graph computes what -O0 computes, on both backends.

Cases: 1. weight and bias (either operand order of the add); 2. no bias; 3. a weight of
several output axes stored [out..., in] with a bias over some of them; 4. declined: the
right operand is not a parameter, the weight shares a kept axis (per-expert weights), the
added term is not a parameter.
"""
from __future__ import annotations

import re

import pytest

from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ir import print_graph
from archlang.compiler.passes import PassContext, optimize

from pass_checks import assert_matches, reference_and_optimised

SOURCE = """
axis batch, seq
axis e = 6, n = 5, heads = 2, head = 3, expert = 2
model M(x: f32[batch, seq, e], y: f32[batch, seq, n], z: f32[batch, seq, expert, e]) ->
    (a: f32[batch, seq, n], b: f32[batch, seq, n], c: f32[batch, seq, heads, head], d: f32[batch, seq, n],
     f: f32[batch, seq, n], g: f32[batch, seq, expert, n]) {
  param w: [e, n] = normal(1.0)
  param bias: [n] = normal(1.0)
  param w_heads: [heads, head, e] = normal(1.0)
  param b_heads: [head] = normal(1.0)
  param w_expert: [expert, e, n] = normal(1.0)
  return x @ w + bias, bias + x @ w, x @ w_heads + b_heads, x @ w,
         x @ w + y, (z @ w_expert over e)
}
"""


def _load(write_arch):
    return load_graph(str(write_arch(SOURCE)), SourceCache(), {})


def _ir_ops(graph) -> list[str]:
    """The printout's node lines, value numbers replaced by `%_` (golden-style, renumbering
    breaks nothing), params left out."""
    lines = [l.strip() for l in print_graph(graph).splitlines() if " = " in l and "param(" not in l
             and not l.strip().startswith(("param", "output"))]
    return [re.sub(r"%\d+", "%_", l.split("  @")[0]) for l in lines]


def test_dense_layers_become_one_linear_each(write_arch):
    graph = _load(write_arch)
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=["fuse-linear", "eliminate-dead-nodes"], ctx=ctx)
    assert report.counts()["contract-to-linear"] == 5  # a, b, c, d and f, not z @ w_expert
    assert report.counts()["linear-bias"] == 3         # a, b, c
    assert _ir_ops(graph) == [
        "%_ = linear(%_, %_, %_; axes=(e,)) : f32[batch, seq, n=5]",
        "%_ = linear(%_, %_, %_; axes=(e,)) : f32[batch, seq, n=5]",
        # `bias + x @ w` is laid out [n, batch, seq]: the engine keeps that layout
        "%_ = transpose(%_; order=(n, batch, seq)) : f32[n=5, batch, seq]",
        "%_ = linear(%_, %_, %_; axes=(e,)) : f32[batch, seq, heads=2, head=3]",
        "%_ = linear(%_, %_; axes=(e,)) : f32[batch, seq, n=5]",
        "%_ = linear(%_, %_; axes=(e,)) : f32[batch, seq, n=5]",
        "%_ = add(%_, %_) : f32[batch, seq, n=5]",
        "%_ = contract(%_, %_; axes=(e,)) : f32[batch, seq, expert=2, n=5]",
        "%_ = transpose(%_; order=(batch, seq, n)) : f32[batch, seq, n=5]",  # output `b` as declared
    ]
    report_text = ctx.tracer.report()
    assert "the weight shares `expert` with the input" in report_text
    assert "the added term is not a parameter" in report_text


@pytest.mark.parametrize("sizes", [{"batch": 2, "seq": 3}, {"batch": 1, "seq": 7}])
def test_fused_graph_matches_O0_on_both_backends(write_arch, sizes):
    fused, params, inputs, want = reference_and_optimised(lambda: _load(write_arch), ["fuse-linear"], sizes)
    assert_matches(want, fused, params, inputs)


def test_linear_lowers_to_one_matmul_and_add(write_arch):
    """The weight is one 2-D initializer view (Transpose/Reshape of the parameter, folded by
    onnxruntime at load); the activation path is MatMul, Add and the split of the outputs."""
    src = "axis batch, seq\naxis e = 6, heads = 2, head = 3\nmodel M(x: f32[batch, seq, e]) -> f32[batch, seq, heads, head] {\n" \
          "  param w: [heads, head, e] = normal(1.0)\n  param b: [heads, head] = normal(1.0)\n  return x @ w + b\n}\n"
    graph = load_graph(str(write_arch(src, "one.arch")), SourceCache(), {})
    optimize(graph, only=["fuse-linear", "eliminate-dead-nodes"])
    model = to_onnx(graph, load_params(graph, None, seed=0))
    folded = {i.name for i in model.graph.initializer}  # what onnxruntime computes at load
    on_input = []
    for n in model.graph.node:
        if all(i in folded for i in n.input):
            folded.update(n.output)
        else:
            on_input.append(n.op_type)
    assert on_input == ["MatMul", "Add", "Reshape"]  # the last splits the 6 outputs into (heads, head)
