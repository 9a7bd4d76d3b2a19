"""The rewrite-rule engine and the pass manager on the smallest graphs that show each case."""
from __future__ import annotations

import pytest

from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph
from archlang.compiler.ir import print_graph
from archlang.compiler.passes import PassBug, PassContext, optimize
from archlang.compiler.passes.manager import PassResult, run_passes
from archlang.compiler.passes.rewrite import AddChain, Const, Match, Op, Rule, Var, apply_rules
from archlang.compiler.passes.trace import Tracer

SCORES = """
axis batch, seq
axis key ~ seq
axis heads = 2, head = 4
model M(q: f32[batch, seq, heads, head], k: f32[batch, key, heads, head], v: f32[batch, key, heads, head],
        bias: f32[heads, seq, key]) -> f32[batch, seq, heads, head] {
  a = softmax(BODY over key)
  return (a @ v over key)
}
"""


def graph_of(write_arch, body: str):
    path = write_arch(SCORES.replace("BODY", body))
    return load_graph(str(path), SourceCache(), {})


def ops_of(graph) -> list[str]:
    return [n.op for n in graph.nodes]


@pytest.mark.parametrize("body, scale, has_bias, causal", [
    ("(q @ k over head) / 2.0", 0.5, False, None),
    ("0.5 * (q @ k over head)", 0.5, False, None),            # commuted multiply
    ("(q @ k over head)", 1.0, False, None),                  # no scale
    ("bias + (q @ k over head) / 2.0", 0.5, True, None),      # bias on the left
    ("(q @ k over head) / 2.0 + causal(seq, key) + bias", 0.5, True, "seq"),
    ("causal(seq, key) + ((k @ q over head) + bias)", 1.0, True, "seq"),  # `k @ q`, terms grouped
])
def test_attention_fuses_every_spelling(write_arch, body, scale, has_bias, causal):
    graph = graph_of(write_arch, body)
    report = optimize(graph, only=["fuse-attention", "eliminate-dead-nodes"])
    assert report.counts()["attention"] == 1
    (node,) = [n for n in graph.nodes if n.op == "attention"]
    assert node.attrs["scale"] == scale and node.attrs.get("causal") == causal
    assert len(node.inputs) == 3 + has_bias
    assert "softmax" not in ops_of(graph)


def test_a_shared_intermediate_blocks_the_fusion_and_says_why(write_arch):
    path = write_arch("""
        axis batch, seq
        axis key ~ seq
        axis head = 4
        model M(q: f32[batch, seq, head], k: f32[batch, key, head], v: f32[batch, key, head])
            -> (out: f32[batch, seq, head], probs: f32[batch, seq, key]) {
          a = softmax((q @ k over head) over key)
          return (a @ v over key), a
        }
    """)
    graph = load_graph(str(path), SourceCache(), {})
    ctx = PassContext(tracer=Tracer(enabled=True))
    assert optimize(graph, only=["fuse-attention"], ctx=ctx).counts() == {}
    assert "rejected attention at model.arch:7:11 in (model)" in ctx.tracer.report()
    assert "the `softmax` result is also an output of the graph" in ctx.tracer.report()


def test_unfusable_axes_are_explained(write_arch):
    # The softmax normalises over the query positions, but the values are summed over `key`.
    path = write_arch("""
        axis batch, seq
        axis key ~ seq
        axis head = 4
        model M(q: f32[batch, seq, head], k: f32[batch, key, head], v: f32[batch, key, head]) -> f32[batch, seq, head] {
          a = softmax((q @ k over head) over seq)
          return (a @ v over key)
        }
    """)
    graph = load_graph(str(path), SourceCache(), {})
    ctx = PassContext(tracer=Tracer(enabled=True))
    optimize(graph, only=["fuse-attention"], ctx=ctx)
    assert "the values are summed over key, not the softmax axis `seq`" in ctx.tracer.report()


class DoubleToAdd(Rule):
    """x * 2 -> x + x: a rule written for this test."""
    name, pattern = "double", Op("mul", Var("x"), Const("two"))

    def check(self, m: Match):
        return None if m.const("two") == 2.0 else "not two"

    def rewrite(self, m, b):
        return b.emit1("add", [m["x"], m["x"]])


def test_a_rule_fires_on_both_operand_orders_and_counts(write_arch):
    path = write_arch("""
        axis n = 3
        model M(x: f32[n]) -> f32[n] {
          return 2.0 * x + x * 2.0 + x * 3.0
        }
    """)
    graph = load_graph(str(path), SourceCache(), {})
    result = apply_rules(graph, [DoubleToAdd()], PassContext())
    assert result.counts == {"double": 2}
    assert ops_of(graph).count("mul") == 1


def test_add_chain_collects_every_term(write_arch):
    path = write_arch("""
        axis n = 3
        model M(x: f32[n], a: f32[n], b: f32[n], c: f32[n]) -> f32[n] {
          return exp(a + (-x + b) + c)
        }
    """)
    graph = load_graph(str(path), SourceCache(), {})
    x, a, b, c = (v for _, v in graph.inputs)
    m = Match(graph.users())
    assert Op("exp", AddChain(Op("neg", Var("x")), into="terms")).match_node(graph.nodes[-1], m)
    assert m["x"] is x and {id(t) for t in m["terms"]} == {id(a), id(b), id(c)}
    m = Match(graph.users())
    assert not Op("exp", AddChain(Op("sqrt", Var("x")), into="terms")).match_node(graph.nodes[-1], m)


class BreakTypes:
    """A broken pass: it renames an output's axis without telling anyone."""
    name, summary = "break-types", "for this test"

    def run(self, graph, ctx):
        from archlang.compiler.axes import Axis
        node = graph.nodes[-1]
        t = node.outputs[0].type
        node.outputs[0].type = t.with_axes((Axis("bogus", t.axes[0].size),) + t.axes[1:])
        return PassResult(True, {})


def test_the_verifier_names_the_pass_that_broke_the_graph(write_arch):
    path = write_arch("""
        axis n = 3
        model M(x: f32[n]) -> f32[n] {
          return exp(x)
        }
    """)
    graph = load_graph(str(path), SourceCache(), {})
    with pytest.raises(PassBug, match=r"after pass `break-types`.*`exp` outputs f32\[bogus=3\]"):
        run_passes(graph, [BreakTypes()])


def test_cleanups_merge_fold_and_drop(write_arch):
    path = write_arch("""
        axis seq = 4
        axis key ~ seq
        model M(x: f32[seq, key]) -> f32[seq, key] {
          unused = exp(x)
          m1 = causal(seq, key) * 1.0
          m2 = causal(seq, key) + 0.0
          return x + m1 + m2
        }
    """)
    graph = load_graph(str(path), SourceCache(), {})
    report = optimize(graph, 1)
    counts = report.counts()
    assert counts["mul-by-one"] == 1 and counts["add-zero"] == 1 and counts["merged nodes"] >= 1
    assert counts["folded values"] == 1
    text = print_graph(graph)
    assert "exp" not in text and "causal" not in text and text.count(" = array(") == 1
