"""Layout assignment: one transpose where an awkward axis order starts, none downstream."""
from __future__ import annotations

import numpy as np

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import lower
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.passes import optimize

# `cls + x` broadcasts in the first operand's order: [embed, batch, tokens], which every
# layer norm and dense layer below would transpose to put `embed` last and back.
SOURCE = """
use "nn"
axis batch, tokens
axis embed = 8, hidden = 16
model M(x: f32[batch, tokens, embed]) -> f32[batch, tokens, embed] {
  param cls: [embed] = normal(1.0)
  h = cls + x
  h = h + Linear[hidden, embed](gelu(Linear[embed, hidden](LayerNorm[embed](h) as ln1) as fc1)) as fc2
  return LayerNorm[embed](h) as ln2
}
"""


def onnx_transposes(graph) -> int:
    params = {k: np.zeros([1] * len(p.type.axes), np.float32) for k, p in graph.params.items()}
    model, tensors = lower(graph, params)
    weights = set(tensors)  # and what is computed from them alone (a slice of a packed weight): folded at load
    count = 0
    for n in model.graph.node:
        if all(i in weights for i in n.input if i):
            weights.update(n.output)
        elif n.op_type == "Transpose":
            count += 1
    return count


def optimised_pair(write_arch, source: str, passes: list[str]):
    path = write_arch(source)
    before = load_graph(str(path), SourceCache(), {})
    after = load_graph(str(path), SourceCache(), {})
    report = optimize(after, only=passes)
    params = load_params(before, None, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    np.testing.assert_allclose(run_graph(after, params, {"x": x})["output"],
                               run_graph(before, params, {"x": x})["output"], rtol=1e-6, atol=1e-6)
    assert after.outputs[0][1].type == before.outputs[0][1].type  # the declared order is kept
    return before, after, report.counts()


def test_commuting_an_add_fixes_the_order_for_free(write_arch):
    before, after, counts = optimised_pair(write_arch, SOURCE, ["assign-layouts", "simplify-algebra"])
    assert before.nodes[1].outputs[0].type.names == ("embed", "batch", "tokens")
    # `cls + x` became `x + cls`; the builder's final transpose to the declared order is an
    # identity now, and goes.
    assert counts["layout transposes"] == 1 and counts["transpose-identity"] == 1
    assert [n.op for n in after.nodes].count("transpose") == 0
    assert onnx_transposes(before) >= 4 and onnx_transposes(after) == 0


def test_one_transpose_at_the_start_replaces_one_per_reader(write_arch):
    source = SOURCE.replace("h = cls + x", "h = cls - x")  # not commutative: a transpose is needed
    before, after, counts = optimised_pair(write_arch, source, ["assign-layouts", "simplify-algebra"])
    assert counts["layout transposes"] == 1
    assert [n.op for n in after.nodes].count("transpose") == 1
    # ONNX: `cls - x` aligns x to [embed, batch, tokens], then one transpose back; nothing after.
    assert onnx_transposes(before) >= 4 and onnx_transposes(after) == 2


def test_a_good_layout_is_left_alone(write_arch):
    path = write_arch(SOURCE.replace("h = cls + x", "h = x + cls"))
    graph = load_graph(str(path), SourceCache(), {})
    assert optimize(graph, only=["assign-layouts"]).counts() == {}


def test_rotated_queries_take_the_standard_attention_op_with_grouped_heads():
    """LLaMA's rotary `stack(... over two)` puts `two` first; attention wants its depth axes
    (two, half) last, and then lowers to onnx's Attention with 8 query and 2 key/value heads."""
    from conftest import EXAMPLES
    graph = load_graph(str(EXAMPLES / "llama.arch"), SourceCache(), {"layers": "1"})
    optimize(graph, 2)
    params = {k: np.zeros([1] * len(p.type.axes), np.float32) for k, p in graph.params.items()}
    model, _ = lower(graph, params)
    (attention,) = [n for n in model.graph.node if n.op_type == "Attention"]
    attrs = {a.name: a.i for a in attention.attribute if a.name.endswith("num_heads")}
    assert attrs == {"q_num_heads": 8, "kv_num_heads": 2}


def test_vit_keeps_one_layout_through_every_fused_block():
    """ViT's patch embedding yields [embed, batch, tokens]; after -O2 (where layer norms are
    fused with their residual adds) the activations are transposed once, not in every layer."""
    from conftest import EXAMPLES
    sets = {"depth": "3", "embed": "32", "heads": "2", "height": "32", "width": "32", "classes": "10"}
    before = load_graph(str(EXAMPLES / "vit.arch"), SourceCache(), sets)
    after = load_graph(str(EXAMPLES / "vit.arch"), SourceCache(), sets)
    optimize(after, 2)
    assert onnx_transposes(before) >= 3 * 6 and onnx_transposes(after) <= 3


def test_a_merge_gets_its_axes_back_together(write_arch):
    """A group norm written as split, layer norm over (per_group, h), merge: moving the layer
    norm's axes last parts `group` from `per_group`, so the merge is given a transpose that
    brings them together again (the pass crashed here once)."""
    path = write_arch("""
axis batch
axis c = 6, h = 5, w = 4, group = 2, per_group = 3
model M(x: f32[batch, c, h, w]) -> f32[batch, c, h, w] {
  return merge(layernorm(split(x, c -> (group, per_group)) over per_group, h), (group, per_group) -> c)
}
""")
    before = load_graph(str(path), SourceCache(), {})
    after = load_graph(str(path), SourceCache(), {})
    assert optimize(after, only=["assign-layouts"]).counts() == {"layout transposes": 1}
    merge = next(n for n in after.nodes if n.op == "merge")
    assert merge.inputs[0].producer.op == "transpose"
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(run_graph(after, {}, {"x": x})["output"], run_graph(before, {}, {"x": x})["output"],
                               rtol=1e-6, atol=1e-6)
