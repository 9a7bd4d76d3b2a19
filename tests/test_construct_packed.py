"""examples/packed_gpt2.arch: sequences of different lengths packed into one token axis
with `cu_seqlens` offsets, attention masked block-diagonally (causal within each sequence),
positions restarting per sequence. Checked against running each sequence alone:

1. onnxruntime runs the packed model to the NumPy reference's numbers (-O0 and -O2);
2. both equal examples/gpt2.arch, bound to the same parameters, run on each sequence
   alone (batch 1) and concatenated; a sequence's outputs do not depend on its neighbours.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.compiler.passes import optimize
from test_constructs import build, run_both

SETS = {"layers": "2", "embed": "64", "heads": "4", "vocab": "100"}
LENGTHS = [5, 9, 1, 3]


def packed_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    tokens = np.random.default_rng(seed).integers(0, 100, sum(LENGTHS)).astype(np.int64)
    return {"tokens": tokens, "cu_seqlens": np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)}


def one_by_one(params, tokens: np.ndarray) -> np.ndarray:
    """gpt2.arch on each sequence alone, outputs concatenated along the tokens."""
    graph, _ = build("gpt2", SETS, noise=0)
    assert set(graph.params) == set(params)
    bounds = np.concatenate([[0], np.cumsum(LENGTHS)])
    return np.concatenate([run_graph(graph, params, {"tokens": tokens[None, s:e]})["output"][0]
                           for s, e in zip(bounds[:-1], bounds[1:])])


@pytest.mark.parametrize("level", [0, 2])
def test_packed_equals_each_sequence_alone(level, tmp_path):
    graph, params = build("packed_gpt2", SETS, noise=0.05)
    optimize(graph, level)
    inputs = packed_inputs()
    got = run_both(graph, params, inputs, tmp_path)
    want = one_by_one(params, inputs["tokens"])
    for backend, outs in got.items():
        np.testing.assert_allclose(outs["output"], want, rtol=1e-5, atol=1e-5, err_msg=backend)


def test_neighbours_do_not_leak(tmp_path):
    """Changing the first sequence's tokens leaves every other sequence's outputs as they were."""
    graph, params = build("packed_gpt2", SETS, noise=0.05)
    inputs = packed_inputs()
    before = run_graph(graph, params, inputs)["output"]
    inputs["tokens"][:LENGTHS[0]] = (inputs["tokens"][:LENGTHS[0]] + 1) % 100
    after = run_graph(graph, params, inputs)["output"]
    assert np.abs(after[:LENGTHS[0]] - before[:LENGTHS[0]]).max() > 1e-3
    np.testing.assert_array_equal(after[LENGTHS[0]:], before[LENGTHS[0]:])
