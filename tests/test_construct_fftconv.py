"""examples/fftconv.arch, an H3/Hyena FFT long convolution, checked as tests/test_constructs.py
checks its constructs: onnxruntime agrees with the NumPy reference, and both equal a
computation written here by hand in float64 from the same weights.

The hand computation is the DIRECT causal convolution, y[b, t, c] = sum over s <= t of
k[c, s] * u[b, t - s, c], summed term by term (no FFT), so it checks independently that
padding to 2 * |seq|, the spectra's complex product and `irfft` make a linear, causal
convolution rather than a circular one.
"""
from __future__ import annotations

import numpy as np
import pytest

from test_constructs import build, check_hand, run_both


def causal_conv(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y[b, t, c] = sum_{s <= t} k[c, s] * u[b, t - s, c], directly (u: [b, t, c], k: [c, t])."""
    y = np.zeros_like(u)
    for t in range(u.shape[1]):
        for s in range(t + 1):
            y[:, t, :] += k[:, s] * u[:, t - s, :]
    return y


def fftconv_by_hand(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    w = {k: v.astype(np.float64) for k, v in p.items()}
    u = x.astype(np.float64) @ w["in_proj.weight"].T + w["in_proj.bias"]        # [batch, seq, width]
    y = causal_conv(u, w["conv.k"]) + u * w["conv.D"]                            # long conv + skip
    return x + y @ w["out_proj.weight"].T + w["out_proj.bias"]                   # out projection, residual


@pytest.mark.parametrize("seq", [64, 37])
def test_fftconv_is_a_causal_long_convolution(seq, tmp_path):
    """At the example's size (FFT length 128, a power of two) and at seq = 37 (length 74,
    which onnxruntime transforms with Bluestein's algorithm)."""
    graph, params = build("fftconv", {"seq": str(seq)})
    x = np.random.default_rng(seq).standard_normal((2, seq, 8)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    check_hand(got, {"output": fftconv_by_hand(x, params)})


def test_the_future_does_not_leak(tmp_path):
    """Changing the input at position t changes no output before t (the padding works)."""
    graph, params = build("fftconv")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 8)).astype(np.float32)
    x2 = x.copy()
    x2[:, 40:] = rng.standard_normal((1, 24, 8))
    a, b = (run_both(graph, params, {"x": v}, tmp_path) for v in (x, x2))
    for backend in ("numpy", "onnx"):
        ya, yb = a[backend]["output"], b[backend]["output"]
        assert np.max(np.abs(ya[:, :40] - yb[:, :40])) < 1e-5, backend
        assert np.max(np.abs(ya[:, 40:] - yb[:, 40:])) > 0.1, backend
