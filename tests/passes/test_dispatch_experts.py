"""dispatch-experts (compiler/passes/rules/expert_dispatch.py): `x @ gather(w, idx over expert)`
-> one `expert_linear` op that groups the rows by expert; the rewritten graph computes what
-O0 computes on both backends, with either ONNX lowering, at opset 23 and 17.

Cases: 1. a first expert layer (`x` lacks the `slot` axis the indices carry) and a second
(`h` has it), as examples/moe.arch writes them; 2. the gather on the left of `@`, weights
stored input axis first, several output axes; 3. indices read from an input, negative ones
included, along a symbolic `pick` (each row of `x` repeats a run-time count of times), two
contracted axes; 4. declined: a contraction over an index axis, an input axis the indices
lack, a gathered table also read elsewhere, a lookup of vectors (an embedding dotted with `x`)
and a vocabulary-sized table; 5. whole expert MLPs, gated (SwiGLU, up weights
stored in another order) and plain (GeLU, two hidden axes), each one `expert_mlp`; one whose down layer contracts
part of the hidden axes keeps its first layer alone.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.backends.numpy_codegen import RunError, run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.axes import Size
from archlang.compiler.ops import expert, get
from archlang.compiler.passes import PassContext, optimize

from pass_checks import assert_matches, normal_inputs, run_onnx

SOURCE = """
axis batch, seq, pick
axis e = 6, n = 5, expert = 4, heads = 2, head = 3, two = 2
model M(x: f32[batch, seq, e], r: f32[batch, seq, expert], i: i64[batch, seq, pick], x2: f32[batch, seq, two, e])
    -> (a: f32[batch, seq, e], b: f32[batch, seq, pick, heads, head], c: f32[batch, seq, pick, n],
        d: f32[batch, seq, e], f: f32[batch, seq, two, slot, n], g: f32[batch, seq, slot, n]) {
  param w1: [expert, n, e] = normal(1.0)
  param w2: [expert, e, n] = normal(1.0)
  param wt: [expert, e, heads, head] = normal(1.0)
  param wk: [expert, n, two, e] = normal(1.0)
  weight, chosen = topk(softmax(r over expert), k=2 over expert -> slot)
  h = silu((x @ gather(w1, chosen over expert) over e))
  a = (weight @ (h @ gather(w2, chosen over expert) over n) over slot)
  b = (gather(wt, i over expert) @ x over e)
  c = (x2 @ gather(wk, i over expert) over two, e)
  d = (h @ gather(w2, chosen over expert) over n, slot)
  f = (x2 @ gather(w1, chosen over expert) over e)
  g1 = gather(w1, chosen over expert)
  g = (x @ g1 over e) + sum(g1 over e)
  return a, b, c, d, f, g
}
"""
MLP_SOURCE = """
axis batch, seq
axis e = 6, n = 5, expert = 4, heads = 2, head = 3
model M(x: f32[batch, seq, e], r: f32[batch, seq, expert])
    -> (a: f32[batch, seq, slot, e], b: f32[batch, seq, slot, e], c: f32[batch, seq, slot, heads, e]) {
  param w1: [expert, n, e] = normal(1.0)
  param w3: [expert, e, n] = normal(1.0)
  param w2: [expert, e, n] = normal(1.0)
  param v1: [expert, heads, head, e] = normal(1.0)
  param v2: [expert, e, head, heads] = normal(1.0)
  param v3: [expert, e, head] = normal(1.0)
  param v4: [expert, heads, head, e] = normal(1.0)
  _, chosen = topk(r, k=2 over expert -> slot)
  a = ((silu((x @ gather(w1, chosen over expert) over e)) * (x @ gather(w3, chosen over expert) over e))
       @ gather(w2, chosen over expert) over n)
  b = (gelu((x @ gather(v1, chosen over expert) over e)) @ gather(v2, chosen over expert) over heads, head)
  c = (relu((x @ gather(v4, chosen over expert) over e)) @ gather(v3, chosen over expert) over head)
  return a, b, c
}
"""
DISPATCH = ["dispatch-experts", "eliminate-dead-nodes"]
SIZES = {"batch": 2, "seq": 5, "pick": 3}


def _load(write_arch, source: str = SOURCE):
    return load_graph(str(write_arch(source)), SourceCache(), {})


def _inputs(graph, sizes=SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    feed = normal_inputs(graph, sizes, seed)
    shape = feed["i"].shape
    feed["i"] = np.random.default_rng(seed).integers(-4, 4, shape, dtype=np.int64)  # negatives count from the end
    return feed


def test_routed_contractions_become_expert_linear(write_arch):
    graph = _load(write_arch)
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=DISPATCH, ctx=ctx)
    assert report.counts()["expert-dispatch"] == 5
    fused = [n for n in graph.nodes if n.op == "expert_linear"]
    assert [n.inputs[1].producer.attrs["name"] for n in fused] == ["w1", "w2", "wt", "wk", "w1"]
    assert [n.attrs["axes"] for n in fused] == [("e",), ("n",), ("e",), ("two", "e"), ("e",)]
    # d's and f's contractions are declined; g's gather stays for the `sum` that also reads it
    assert [n.inputs[0].producer.attrs["name"] for n in graph.nodes if n.op == "gather"] == ["w2", "w1", "w1"]
    text = ctx.tracer.report()
    assert "the contraction sums over `slot`, an axis of the expert indices" in text
    assert "the input carries `two`, which the expert indices lack" in text
    assert "expected `gather`" not in text  # contractions without a gather are not candidates


def test_lookups_that_are_no_mixture_are_left_alone(write_arch):
    """A table with no output axes (an embedding row dotted with x) gathers no more than x
    holds; a vocabulary-sized table would unroll one product per entry."""
    graph = _load(write_arch, """
        axis batch, seq
        axis e = 6, n = 5, vocab = 300
        model M(x: f32[batch, seq, e], tokens: i64[batch, seq]) -> (a: f32[batch, seq], b: f32[batch, seq, n]) {
          param emb: [vocab, e] = normal(1.0)
          param big: [vocab, n, e] = normal(1.0)
          return (gather(emb, tokens over vocab) @ x over e), (x @ gather(big, tokens over vocab) over e)
        }
        """)
    ctx = PassContext()
    ctx.tracer.enabled = True
    assert not optimize(graph, only=DISPATCH, ctx=ctx).counts()
    text = ctx.tracer.report()
    assert "each gathered slice is a vector" in text
    assert "`vocab` has 300 entries; dispatch runs one product per expert, up to 256" in text


def test_routed_expert_mlps_group_the_rows_once(write_arch):
    graph = _load(write_arch, MLP_SOURCE)
    ctx = PassContext()
    ctx.tracer.enabled = True
    report = optimize(graph, only=DISPATCH, ctx=ctx)
    assert report.counts()["expert-mlp"] == 2
    mlps = [n for n in graph.nodes if n.op == "expert_mlp"]
    assert [(n.attrs["act"], n.attrs["hidden"], len(n.inputs)) for n in mlps] == [
        ("silu", ("n",), 5), ("gelu", ("heads", "head"), 4)]
    assert [p.producer.attrs["name"] for p in mlps[0].inputs[1:4]] == ["w1", "w3", "w2"]  # gate, up, down
    # c's down layer leaves `heads` on its rows: not a routed layer, so its MLP stays apart
    assert "the input carries `heads`, which the expert indices lack" in ctx.tracer.report()
    assert [n.op for n in graph.nodes].count("expert_linear") == 1


@pytest.mark.parametrize("form", ["sort", "scatter"])
def test_expert_mlps_match_O0_on_both_backends(write_arch, monkeypatch, form):
    monkeypatch.setattr(expert, "ONNX_FORM", form)
    reference = _load(write_arch, MLP_SOURCE)
    params = load_params(reference, None, seed=3)
    feed = normal_inputs(reference, SIZES)
    want = run_graph(reference, params, feed)
    graph = _load(write_arch, MLP_SOURCE)
    optimize(graph, 2)
    assert [n.op for n in graph.nodes].count("expert_mlp") == 2
    for opset in (23, 17):
        assert_matches(want, graph, params, feed, to_onnx(graph, params, opset), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["sort", "scatter"])
@pytest.mark.parametrize("sizes", [SIZES, {"batch": 1, "seq": 1, "pick": 1}])
def test_dispatched_graph_matches_O0_on_both_backends(write_arch, monkeypatch, form, sizes):
    monkeypatch.setattr(expert, "ONNX_FORM", form)
    reference = _load(write_arch)
    params = load_params(reference, None, seed=3)
    feed = _inputs(reference, sizes)
    want = run_graph(reference, params, feed)
    graph = _load(write_arch)
    optimize(graph, 2)
    assert sum(n.op == "expert_linear" for n in graph.nodes) == 4  # g's product is h's, merged by CSE
    model = to_onnx(graph, params)
    assert "Gather" in {n.op_type for n in model.graph.node}
    assert_matches(want, graph, params, feed, model, rtol=1e-5, atol=1e-5)


def test_opset_17_portable_uses_standard_ops_only(write_arch):
    graph = _load(write_arch)
    optimize(graph, 2)
    params = load_params(graph, None, seed=3)
    feed = _inputs(graph)
    model = to_onnx(graph, params, 17, target="portable")
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    reference = _load(write_arch)
    assert_matches(run_graph(reference, params, feed), graph, params, feed, model, rtol=1e-5, atol=1e-5)


def test_an_expert_index_out_of_range_is_an_error(write_arch):
    """As `gather` refuses one (np.take, ONNX Gather), dispatch does not drop the row."""
    graph = _load(write_arch)
    optimize(graph, only=DISPATCH)
    params = load_params(graph, None, seed=3)
    feed = _inputs(graph)
    feed["i"][0, 0, 0] = 4
    for g in (graph, _load(write_arch)):  # dispatched, and as written
        with pytest.raises(RunError, match="index 4 is out of bounds"):
            run_graph(g, params, feed)
    with pytest.raises(Exception, match="out of data bounds"):  # the rows put back number one short
        run_onnx(to_onnx(graph, params), feed)


def test_moe_example_runs_every_expert_layer_by_dispatch():
    """examples/moe.arch at -O2: its SwiGLU experts are one routed MLP and no weights are gathered."""
    from test_examples import EXAMPLES
    graph = load_graph(str(EXAMPLES / "moe.arch"), SourceCache(), {})
    optimize(graph, 2)
    ops = [n.op for n in graph.nodes]
    assert ops.count("expert_mlp") == 1 and "gather" not in ops and "expert_linear" not in ops
    # `archc summary` counts the same multiply-accumulates as for the gather form
    written = load_graph(str(EXAMPLES / "moe.arch"), SourceCache(), {})
    macs = lambda g: sum((get(n.op).macs(n) for n in g.nodes), Size.of(0))
    assert macs(graph) == macs(written) and macs(graph) != Size.of(0)


def test_generated_module_carries_the_dispatch_kernel(tmp_path):
    """`archc emit-numpy -O2 examples/moe.arch`: the module copies the expert kernel (numpy its
    only import) and computes what the evaluator computes."""
    import importlib.util

    from archlang.backends.numpy_codegen import emit_module
    from test_examples import EXAMPLES
    graph = load_graph(str(EXAMPLES / "moe.arch"), SourceCache(), {})
    optimize(graph, 2)
    text = emit_module(graph, "moe.arch")
    assert "def expert_linear(" in text and "import numpy as np" in text
    path = tmp_path / "moe_O2.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = load_params(graph, None, seed=3)
    feed = normal_inputs(graph, {"batch": 2, "seq": 7})
    got = getattr(module, graph.name.lower())(params, **feed)
    np.testing.assert_allclose(got["output"], run_graph(graph, params, feed)["output"], rtol=1e-6, atol=1e-6)
