"""examples/gcn.arch and examples/gat.arch: message passing over an edge list given as
input (`gather` by source node, `scatter_sum` / `scatter_max` into the destination node),
checked the way tests/test_constructs.py checks the other constructs:

1. onnxruntime runs the compiled model to the NumPy reference's numbers (at -O0 and -O2);
2. both equal a float64 hand computation that loops over the edges one by one: the
   degrees, each edge's message, and for GAT each node's softmax over its incoming edges.

The graph is random, with self-loops (as the examples require), a node that only has its
self-loop, and repeated edges.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.compiler.passes import optimize
from test_constructs import build, check_hand, f64, run_both

NODES = 7


def random_graph(seed: int = 0, edges: int = 15) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(0, NODES - 1, edges)           # node NODES-1 sends nothing ...
    dst = rng.integers(0, NODES - 1, edges)           # ... and receives nothing but its self-loop
    src[1], dst[1] = src[0], dst[0]                   # a repeated edge
    loops = np.arange(NODES)
    return {"src": np.concatenate([src, loops]).astype(np.int64), "dst": np.concatenate([dst, loops]).astype(np.int64)}


def gcn_layer_by_hand(x, src, dst, weight, bias):
    degree = np.zeros(len(x))
    for i in dst:
        degree[i] += 1
    h = x @ weight.T
    out = np.zeros((len(x), weight.shape[0]))
    for j, i in zip(src, dst):
        out[i] += h[j] / np.sqrt(degree[j] * degree[i])
    return out + bias


def gat_layer_by_hand(x, src, dst, p):
    heads, channels = p["conv.att_src"].shape
    h = (x @ p["conv.weight"].reshape(heads * channels, -1).T).reshape(len(x), heads, channels)
    out = np.zeros((len(x), heads, channels))
    for i in range(len(x)):
        incoming = [(e, j) for e, (j, d) in enumerate(zip(src, dst)) if d == i]
        for head in range(heads):
            scores = np.array([h[j, head] @ p["conv.att_src"][head] + h[i, head] @ p["conv.att_dst"][head]
                               for _, j in incoming])
            scores = np.where(scores > 0, scores, 0.2 * scores)
            alpha = np.exp(scores - scores.max())
            alpha /= alpha.sum()
            for a, (_, j) in zip(alpha, incoming):
                out[i, head] += a * h[j, head]
    return out.reshape(len(x), heads * channels) + p["conv.bias"]


@pytest.mark.parametrize("level", [0, 2])
def test_gcn_matches_edge_loops(level, tmp_path):
    graph, params = build("gcn", noise=0.1)
    optimize(graph, level)
    inputs = {"x": np.random.default_rng(5).standard_normal((NODES, 16)).astype(np.float32), **random_graph()}
    got = run_both(graph, params, inputs, tmp_path)
    p, x = f64(params), inputs["x"].astype(np.float64)
    h = np.maximum(gcn_layer_by_hand(x, inputs["src"], inputs["dst"], p["conv1.weight"], p["conv1.bias"]), 0)
    want = gcn_layer_by_hand(h, inputs["src"], inputs["dst"], p["conv2.weight"], p["conv2.bias"])
    check_hand(got, {"output": want}, tol=1e-5)


@pytest.mark.parametrize("level", [0, 2])
def test_gat_matches_edge_loops(level, tmp_path):
    graph, params = build("gat", noise=0.3)
    optimize(graph, level)
    inputs = {"x": np.random.default_rng(6).standard_normal((NODES, 16)).astype(np.float32), **random_graph(1)}
    got = run_both(graph, params, inputs, tmp_path)
    want = gat_layer_by_hand(inputs["x"].astype(np.float64), inputs["src"], inputs["dst"], f64(params))
    check_hand(got, {"output": want}, tol=1e-5)


def test_scatter_reductions_by_hand(tmp_path):
    """scatter_sum, scatter_mean and scatter_max of one [edge, feat] tensor, a node nothing
    reaches included (0 for all three), against loops."""
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    source = """
axis edge, node, feat = 3
model Scatter(v: f32[edge, feat], dst: i64[edge], x: f32[node]) -> (a: f32[node, feat], b: f32[feat, node], c: i64[node, feat]) {
  # x only brings in the node axis and its size
  return scatter_sum(v, dst over edge -> node) + 0 * x, scatter_mean(v, dst over edge -> node), scatter_max(cast(v * 10, i64), dst over edge -> node)
}
"""
    path = tmp_path / "scatter.arch"
    path.write_text(source)
    graph = load_graph(str(path), SourceCache())
    rng = np.random.default_rng(2)
    v = rng.standard_normal((6, 3)).astype(np.float32)
    dst = np.array([0, 2, 0, 3, 2, 0])
    got = run_both(graph, {}, {"v": v, "dst": dst, "x": np.zeros(5, np.float32)}, tmp_path)
    total, count = np.zeros((5, 3)), np.zeros(5)
    top = np.zeros((5, 3), dtype=np.int64)
    for e, i in enumerate(dst):
        total[i] += v[e]
        top[i] = np.maximum(top[i], (v[e] * 10).astype(np.int64)) if count[i] else (v[e] * 10).astype(np.int64)
        count[i] += 1
    mean = (total / np.maximum(count, 1)[:, None]).T
    for backend, outs in got.items():
        a, b, c = (outs[k] for k in sorted(outs))
        np.testing.assert_allclose(a, total, atol=1e-6, err_msg=backend)
        np.testing.assert_allclose(b, mean, atol=1e-6, err_msg=backend)
        np.testing.assert_array_equal(c, top, err_msg=backend)


def test_scatter_max_needs_opset_18(tmp_path):
    from archlang.backends.onnx_export import to_onnx
    from archlang.compiler.diagnostics import CompileError
    graph, params = build("gat")
    with pytest.raises(CompileError, match="compile with --opset 18 or newer"):
        to_onnx(graph, params, opset=17)
