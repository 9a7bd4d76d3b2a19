"""Recurrences written with `scan`, each an example in examples/, checked as in
tests/test_constructs.py: onnxruntime against the NumPy reference, and both against a
computation written here.

- examples/rnn.arch: a bidirectional GRU, bound to torch.nn.GRU's state_dict as it is;
  checked against torch (with the parity extra) and against the GRU equations by hand.
- examples/linear_attention.arch: causal linear attention as a recurrence over running
  sums; checked against the quadratic masked form, which never carries state.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_constructs import build, check_hand, f64, run_both, sigmoid

GATES = 3


def gru_direction(x, w_ih, w_hh, b_ih, b_hh, reverse=False):
    """One direction of torch.nn.GRU (gates r, z, n stacked in the weights' first axis)."""
    batch, seq, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden))
    out = np.zeros((batch, seq, hidden))
    for t in (reversed(range(seq)) if reverse else range(seq)):
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = sigmoid(gi[:, :hidden] + gh[:, :hidden])
        z = sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        h = (1 - z) * n + z * h
        out[:, t] = h
    return out, h


def gru_by_hand(x, sd):
    """The bidirectional GRU from torch-layout weights `sd` (weight_ih_l0, ..., *_reverse)."""
    fwd, last = gru_direction(x, *(sd[f"{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    bwd, first = gru_direction(x, *(sd[f"{k}_l0_reverse"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
                               reverse=True)
    return {"output": np.concatenate([fwd, bwd], axis=-1), "h_n": np.stack([last, first])}


@pytest.mark.parametrize("seq", [1, 7, 32])
def test_bidirectional_gru_by_hand(seq, tmp_path):
    graph, params = build("rnn")
    x = np.random.default_rng(seq).standard_normal((2, seq, 16)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    stored = {}  # the parameters in torch's layout: [(gate, hidden), embed]
    for name, short in [("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")]:
        for suffix, tail in [("", ""), ("_r", "_reverse")]:
            p = f64(params)[name + suffix]
            stored[f"{short}_l0{tail}"] = p.reshape(GATES * p.shape[1], *p.shape[2:])
    check_hand(got, gru_by_hand(x.astype(np.float64), stored))


def test_bidirectional_gru_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    gru = torch.nn.GRU(16, 32, batch_first=True, bidirectional=True).eval()
    weights = tmp_path / "gru.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in gru.state_dict().items()}, str(weights))
    graph, params = build("rnn", weights=str(weights))
    x = torch.randn(2, 32, 16)
    with torch.no_grad():
        output, h_n = gru(x)
    got = run_both(graph, params, {"x": x.numpy()}, tmp_path)
    check_hand(got, {"output": output.double().numpy(), "h_n": h_n.double().numpy()}, tol=1e-5)


def linear_attention_quadratic(x, w_qkv, w_out, eps=1e-6):
    """Causal linear attention in its parallel form: every pair of positions, masked."""
    q, k, v = np.einsum("bte,khde->kbthd", x, w_qkv)
    phi = lambda a: np.where(a > 0, a + 1, np.exp(a))  # noqa: E731  (elu + 1)
    q, k = phi(q), phi(k)
    seq = x.shape[1]
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) * np.tril(np.ones((seq, seq)))
    out = np.einsum("bhqk,bkhv->bqhv", scores, v) / (scores.sum(-1).transpose(0, 2, 1)[..., None] + eps)
    return np.einsum("bqhv,ehv->bqe", out, w_out)


@pytest.mark.parametrize("seq", [1, 9, 32])
def test_linear_attention_equals_the_quadratic_form(seq, tmp_path):
    graph, params = build("linear_attention")
    x = np.random.default_rng(seq).standard_normal((2, seq, 32)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    p = f64(params)
    check_hand(got, {"output": linear_attention_quadratic(x.astype(np.float64), p["w_qkv"], p["w_out"])})
