"""examples/tokenformer.arch: TokenFormer's Pattention (attention between the input tokens
and learned parameter tokens, gelu then L2 normalisation in place of softmax), checked the
way tests/test_constructs.py checks the other constructs:

1. onnxruntime runs the compiled model to the NumPy reference's numbers;
2. both equal a float64 NumPy computation of the whole decoder written from the paper's
   equations (the official code's `nonlinear_normalization(..., 'gelu_l2_norm')`, with tau
   fixed at sqrt of the trained token count);
3. growth: appending parameter tokens whose keys and values are zero leaves every output
   unchanged, while non-zero new tokens change them.
"""
from __future__ import annotations

import math

import numpy as np

from test_constructs import build, check_hand, f64, gelu, layernorm, run_both, softmax

HEADS, TRAINED_TOKENS = 4, 32


def pattention(x, p, name):
    a = gelu(x @ p[f"{name}.key_param_tokens"].T)                     # [..., tokens]
    a = a / np.linalg.norm(a, axis=-1, keepdims=True) * math.sqrt(TRAINED_TOKENS)
    return a @ p[f"{name}.value_param_tokens"]


def decoder_by_hand(ids, p, layers=2):
    x = p["embedding"][ids]                                           # [batch, seq, embed]
    batch, seq, embed = x.shape
    head = embed // HEADS
    causal = np.triu(np.full((seq, seq), -np.inf), 1)
    for i in range(layers):
        n = f"layers.{i}"
        h = layernorm(x, p[f"{n}.norm1.weight"], p[f"{n}.norm1.bias"])
        q, k, v = (pattention(h, p, f"{n}.{w}").reshape(batch, seq, HEADS, head).transpose(0, 2, 1, 3)
                   for w in ("query", "key", "value"))
        a = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + causal)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(batch, seq, embed)
        x = x + pattention(o, p, f"{n}.out")
        x = x + pattention(layernorm(x, p[f"{n}.norm2.weight"], p[f"{n}.norm2.bias"]), p, f"{n}.ffn")
    return layernorm(x, p["norm.weight"], p["norm.bias"])


def ids(seed=4, batch=2, seq=9):
    return {"ids": np.random.default_rng(seed).integers(0, 1000, (batch, seq)).astype(np.int64)}


def test_tokenformer_matches_hand_computation(tmp_path):
    graph, params = build("tokenformer", noise=0.2)
    inputs = ids()
    got = run_both(graph, params, inputs, tmp_path)
    check_hand(got, {"output": decoder_by_hand(inputs["ids"], f64(params))}, tol=1e-4)


def grown(params, new_tokens: int, fill):
    """Every Pattention's key and value parameter tokens with `new_tokens` rows appended."""
    out = {}
    for name, value in params.items():
        if name.endswith("_param_tokens"):
            value = np.concatenate([value, fill((new_tokens, value.shape[1])).astype(value.dtype)])
        out[name] = value
    return out


def test_zero_parameter_tokens_leave_outputs_unchanged(tmp_path):
    graph, params = build("tokenformer", noise=0.2)
    inputs = ids()
    before = run_both(graph, params, inputs, tmp_path)
    bigger, _ = build("tokenformer", {"tokens": str(TRAINED_TOKENS + 8)}, noise=0)
    after = run_both(bigger, grown(params, 8, np.zeros), inputs, tmp_path)
    for backend in ("onnx", "numpy"):
        np.testing.assert_allclose(after[backend]["output"], before[backend]["output"], rtol=1e-5, atol=1e-5)
    changed = run_both(bigger, grown(params, 8, lambda shape: 0.2 * np.random.default_rng(0).standard_normal(shape)), inputs, tmp_path)
    assert np.max(np.abs(changed["numpy"]["output"] - before["numpy"]["output"])) > 1e-2
