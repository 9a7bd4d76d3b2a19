"""examples/titans.arch: a Titans-style neural memory, a `scan` whose carried state is a
memory matrix updated at each step by a gradient step on its own prediction error, with
momentum and forgetting. Checked the way tests/test_constructs.py checks the constructs:

1. onnxruntime runs the compiled model to the NumPy reference's numbers (-O0 and -O2);
2. both equal the recurrence written out by hand in float64, with the gradient of
   ||M k - v||^2 taken numerically (central differences), not from the closed form, so the
   test also checks that the example's update is that loss's gradient.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.compiler.passes import optimize
from test_constructs import build, f64, run_both, sigmoid


def numeric_gradient(memory, k, v, h=1e-6):
    """d/dM of ||M k - v||^2 by central differences, entry by entry."""
    grad = np.zeros_like(memory)
    for idx in np.ndindex(memory.shape):
        up, down = memory.copy(), memory.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (np.sum((up @ k - v) ** 2) - np.sum((down @ k - v) ** 2)) / (2 * h)
    return grad


def memory_by_hand(x, p):
    batch, seq, _ = x.shape
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    k, q, v = unit(x @ p["w_k"].T), unit(x @ p["w_q"].T), x @ p["w_v"].T
    theta, eta, alpha = 0.1 * sigmoid(x @ p["w_theta"]), sigmoid(x @ p["w_eta"]), 0.1 * sigmoid(x @ p["w_alpha"])
    out = np.zeros((batch, seq, p["w_out"].shape[0]))
    for b in range(batch):
        memory = np.zeros((v.shape[-1], k.shape[-1]))
        momentum = np.zeros_like(memory)
        for t in range(seq):
            momentum = eta[b, t] * momentum - theta[b, t] * numeric_gradient(memory, k[b, t], v[b, t])
            memory = (1 - alpha[b, t]) * memory + momentum
            out[b, t] = p["w_out"] @ (memory @ q[b, t])
    return out


@pytest.mark.parametrize("level", [0, 2])
def test_neural_memory_matches_recurrence(level, tmp_path):
    graph, params = build("titans", noise=0.1)
    optimize(graph, level)
    x = np.random.default_rng(8).standard_normal((2, 6, 32)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    want = memory_by_hand(x.astype(np.float64), f64(params))
    for backend, outs in got.items():
        print(backend, float(np.abs(outs["output"] - want).max()), float(np.abs(want).max()))
        np.testing.assert_allclose(outs["output"], want, rtol=1e-5, atol=1e-5, err_msg=backend)
