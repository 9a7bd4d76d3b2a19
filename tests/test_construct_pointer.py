"""examples/pointer.arch: a pointer network whose decoder `scan` feeds its own choice back
(a scan that slices no input: it runs |step| steps on its carried state), checked the way
tests/test_constructs.py checks the other constructs:

1. onnxruntime runs the compiled model to the NumPy reference's numbers (-O0 and -O2);
2. both equal a float64 NumPy loop over the steps written from the paper's equations: the
   encoder RNN, additive attention over the input positions, argmax over the positions not
   chosen yet, the chosen point's embedding fed back;
3. the pointers of each batch row are a permutation of its positions.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.compiler.passes import optimize
from test_constructs import build, f64, run_both


def pointer_by_hand(x, p):
    """x [batch, n, 2] -> pointers [n, batch], scores [n, batch, n]."""
    batch, n, _ = x.shape
    points = x @ p["embedding"].T                                      # [batch, n, embed]
    h = np.zeros((batch, p["enc_b"].shape[0]))
    encoded = []
    for j in range(n):
        h = np.tanh(points[:, j] @ p["enc_ih"].T + h @ p["enc_hh"].T + p["enc_b"])
        encoded.append(h)
    memory = np.stack(encoded, 1) @ p["w_ref"].T                       # [batch, n, att]
    inp = np.broadcast_to(p["start"], (batch, p["start"].shape[0]))
    chosen = np.zeros((batch, n))
    pointers, scores = [], []
    for _ in range(n):
        h = np.tanh(inp @ p["dec_ih"].T + h @ p["dec_hh"].T + p["dec_b"])
        score = np.tanh(memory + (h @ p["w_query"].T)[:, None, :]) @ p["v"] - 1e9 * chosen
        best = score.argmax(1)
        chosen[np.arange(batch), best] += 1
        inp = points[np.arange(batch), best]
        pointers.append(best)
        scores.append(score)
    return np.stack(pointers), np.stack(scores)


@pytest.mark.parametrize("level", [0, 2])
def test_pointer_network_matches_loop(level, tmp_path):
    graph, params = build("pointer", noise=0.1)
    optimize(graph, level)
    x = np.random.default_rng(7).uniform(0, 1, (3, 9, 2)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    pointers, scores = pointer_by_hand(x.astype(np.float64), f64(params))
    for backend, outs in got.items():
        np.testing.assert_array_equal(outs["pointers"], pointers, err_msg=backend)
        chosen = scores > -1e8                       # positions still open at each step
        np.testing.assert_allclose(outs["scores"][chosen], scores[chosen], atol=1e-5, err_msg=backend)
        assert (outs["scores"][~chosen] < -1e8).all()
        for b in range(x.shape[0]):
            assert sorted(outs["pointers"][:, b]) == list(range(x.shape[1]))
