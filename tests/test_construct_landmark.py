"""examples/landmark.arch: landmark attention with top-k chunk retrieval and the grouped
softmax, checked the way tests/test_constructs.py checks the other constructs:

1. onnxruntime runs the compiled model to the NumPy reference's numbers (-O0 and -O2);
2. both equal a float64 loop over queries and heads that retrieves the best chunks by
   sorting their landmark scores and attends to those chunks' tokens only;
3. retrieval is real: changing a chunk that no query keeps leaves the outputs as they were.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.compiler.passes import optimize
from test_constructs import build, f64, run_both, softmax

HEADS, RETRIEVE = 4, 2


def landmark_by_hand(q_in, memory, p):
    batch, queries, embed = q_in.shape
    head = embed // HEADS
    proj = lambda x, w: np.einsum("...e,ehd->...hd", x, w)  # noqa: E731  w [embed, heads, head]
    q = proj(q_in, p["w_q"]) / np.sqrt(head)
    k, v = proj(memory, p["w_k"]), proj(memory, p["w_v"])                 # [batch, chunk, pos, heads, head]
    out = np.zeros((batch, queries, HEADS, head))
    for b in range(batch):
        for i in range(queries):
            for h in range(HEADS):
                landmark = k[b, :, -1, h] @ q[b, i, h]                        # [chunk]
                kept = np.argsort(-landmark, kind="stable")[:RETRIEVE]
                gate = softmax(landmark[kept])
                for g, c in zip(gate, kept):
                    within = softmax(k[b, c, :-1, h] @ q[b, i, h])
                    out[b, i, h] += g * (within @ v[b, c, :-1, h])
    return np.einsum("bqhd,hde->bqe", out, p["w_o"])


def inputs(seed=9, chunks=5):
    rng = np.random.default_rng(seed)
    return {"q_in": rng.standard_normal((2, 3, 32)).astype(np.float32),
            "memory": rng.standard_normal((2, chunks, 8, 32)).astype(np.float32)}


@pytest.mark.parametrize("level", [0, 2])
def test_landmark_attention_matches_loops(level, tmp_path):
    graph, params = build("landmark", noise=0.3)
    optimize(graph, level)
    x = inputs()
    got = run_both(graph, params, x, tmp_path)
    want = landmark_by_hand(x["q_in"].astype(np.float64), x["memory"].astype(np.float64), f64(params))
    for backend, outs in got.items():
        print(backend, float(np.abs(outs["output"] - want).max()), float(np.abs(want).max()))
        np.testing.assert_allclose(outs["output"], want, rtol=1e-5, atol=1e-5, err_msg=backend)


def test_chunks_not_retrieved_do_not_matter(tmp_path):
    from archlang.backends.numpy_codegen import run_graph
    graph, params = build("landmark", noise=0.3)
    x = inputs(chunks=24)
    p = f64(params)
    before = run_graph(graph, params, x)["output"]
    q = np.einsum("bqe,ehd->bqhd", x["q_in"], p["w_q"])
    k = np.einsum("bcpe,ehd->bcphd", x["memory"], p["w_k"])
    scores = np.einsum("bqhd,bchd->bqhc", q, k[:, :, -1])
    kept = np.argsort(-scores, axis=-1)[..., :RETRIEVE]
    unused = [c for c in range(24) if not (kept[0] == c).any()]
    assert unused, "every chunk is kept by some query: pick another seed"
    x["memory"][0, unused[0], :-1] += 10.0                       # its regular tokens only
    after = run_graph(graph, params, x)["output"]
    np.testing.assert_array_equal(after[0], before[0])
    x["memory"][0, unused[0], -1] += 10.0                        # now its landmark too
    assert np.abs(run_graph(graph, params, x)["output"][0] - before[0]).max() > 1e-3
