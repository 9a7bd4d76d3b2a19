"""The standard library's norm, attention and recurrent blocks (stdlib/norm.arch,
attention.arch, recurrent.arch) without torch: onnxruntime against the NumPy reference,
both against formulas written here in NumPy (float64), and the parameter names a torch
state_dict needs. tests/parity/test_stdlib_*.py holds them to the torch modules themselves.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_construct_scan import gru_direction
from test_constructs import check_hand, f64, run_both

from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params


def build(source: str, tmp_path, noise: float = 0.1):
    path = tmp_path / "model.arch"
    path.write_text(source)
    graph = load_graph(str(path), SourceCache(), {})
    params = load_params(graph, None, seed=0)
    rng = np.random.default_rng(1)
    return graph, {k: (v + noise * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in params.items()}


NORMS = """use "norm"
axis batch
axis c = 6, h = 3, w = 4

model M(x: f32[batch, c, h, w]) -> (g: f32[batch, c, h, w], i: f32[batch, c, h, w]) {
  g = Dropout[p=0.2](GroupNorm[c, h, w, num_groups=3, eps=1e-3](x) as gn)
  i = InstanceNorm2d[c, h, w, affine=true](x) as inorm
  return g, i
}
"""


def test_group_and_instance_norm_by_hand(tmp_path):
    graph, params = build(NORMS, tmp_path)
    assert sorted(params) == ["gn.bias", "gn.weight", "inorm.bias", "inorm.weight"]
    x = np.random.default_rng(0).standard_normal((2, 6, 3, 4)).astype(np.float32) * 2 + 1
    got = run_both(graph, params, {"x": x}, tmp_path)
    p, xd = f64(params), x.astype(np.float64)
    groups = xd.reshape(2, 3, 2, 3, 4)                     # channels split (group, per_group)
    mean = groups.mean(axis=(2, 3, 4), keepdims=True)
    var = groups.var(axis=(2, 3, 4), keepdims=True)
    g = ((groups - mean) / np.sqrt(var + 1e-3)).reshape(x.shape)
    g = g * p["gn.weight"][:, None, None] + p["gn.bias"][:, None, None]
    mean, var = xd.mean(axis=(2, 3), keepdims=True), xd.var(axis=(2, 3), keepdims=True)
    i = (xd - mean) / np.sqrt(var + 1e-5) * p["inorm.weight"][:, None, None] + p["inorm.bias"][:, None, None]
    check_hand(got, {"g": g, "i": i})


def test_multihead_attention_by_hand(tmp_path):
    source = """use "attention"
axis batch, seq, mem
axis embed = 8

model M(x: f32[batch, seq, embed], m: f32[batch, mem, embed]) -> f32[batch, seq, embed] {
  return MultiheadAttention[seq, mem, embed, num_heads=2](x, m, m) as attn
}
"""
    graph, params = build(source, tmp_path)
    assert sorted(params) == ["attn.in_proj_bias", "attn.in_proj_weight", "attn.out_proj.bias", "attn.out_proj.weight"]
    rng = np.random.default_rng(0)
    x, m = rng.standard_normal((2, 3, 8)).astype(np.float32), rng.standard_normal((2, 5, 8)).astype(np.float32)
    got = run_both(graph, params, {"x": x, "m": m}, tmp_path)
    p = f64(params)
    w = p["attn.in_proj_weight"].reshape(24, 8)        # torch's [3 * embed, embed]
    b = p["attn.in_proj_bias"].reshape(24)
    q, k, v = x @ w[:8].T + b[:8], m @ w[8:16].T + b[8:16], m @ w[16:].T + b[16:]
    heads = lambda t: t.reshape(t.shape[0], t.shape[1], 2, 4).transpose(0, 2, 1, 3)  # noqa: E731
    s = heads(q) @ heads(k).transpose(0, 1, 3, 2) / 2.0
    a = np.exp(s - s.max(-1, keepdims=True))
    o = ((a / a.sum(-1, keepdims=True)) @ heads(v)).transpose(0, 2, 1, 3).reshape(2, 3, 8)
    check_hand(got, {"output": o @ p["attn.out_proj.weight"].T + p["attn.out_proj.bias"]})


def test_stacked_bidirectional_gru_by_hand(tmp_path):
    """Two layers, both directions: the second layer reads the first's [forward, backward]."""
    source = """use "recurrent"
axis batch, seq
axis embed = 5, hidden = 3, feature = 2 * hidden

model M(x: f32[batch, seq, embed]) -> f32[batch, seq, feature] {
  return GRU[seq, embed, hidden, feature, num_layers=2, bidirectional=true](x) as gru
}
"""
    graph, params = build(source, tmp_path)
    names = [f"gru.{k}_l{i}{r}" for i in range(2) for r in ("", "_reverse")
             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert sorted(params) == sorted(names)     # torch's state_dict keys, under `gru.`
    x = np.random.default_rng(0).standard_normal((2, 7, 5)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)
    p = {k: v.reshape(-1, *v.shape[2:]) for k, v in f64(params).items()}   # torch's [(gate, hidden), ...]
    y = x.astype(np.float64)
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    for layer in range(2):
        fwd, _ = gru_direction(y, *(p[f"gru.{k}_l{layer}"] for k in kinds))
        bwd, _ = gru_direction(y, *(p[f"gru.{k}_l{layer}_reverse"] for k in kinds), reverse=True)
        y = np.concatenate([fwd, bwd], axis=-1)
    check_hand(got, {"output": y})


def test_lstm_parameter_names_and_layer_limit(write_arch, archc_inprocess):
    path = write_arch("""
        use "recurrent"
        axis batch, seq, embed = 4, hidden = 3

        model M(x: f32[seq, batch, embed]) -> f32[seq, batch, hidden] {
          return LSTM[seq, embed, hidden, hidden, num_layers=LAYERS, bias=false](x) as lstm
        }
        """.replace("LAYERS", "4"))
    result = archc_inprocess("ir", path)
    assert result.returncode == 0, result.stderr
    declared = sorted(line.split()[1][:-1] for line in result.stdout.splitlines() if line.strip().startswith("param "))
    assert declared == sorted(f"lstm.{k}_l{i}" for i in range(4) for k in ("weight_ih", "weight_hh"))
    path.write_text(path.read_text().replace("num_layers=4", "num_layers=5"))
    result = archc_inprocess("check", path)
    assert result.returncode == 1
    assert "at_most_4_layers" in result.stderr and "stack LSTMLayer calls" in result.stderr


@pytest.mark.parametrize("norm_first", ["false", "true"])
def test_transformer_encoder_layer_backends_agree(norm_first, tmp_path):
    source = f"""use "attention"
axis batch, seq
axis embed = 8, ff = 16

model M(x: f32[seq, batch, embed]) -> f32[seq, batch, embed] {{
  return TransformerEncoderLayer[seq, embed, ff, nhead=2, norm_first={norm_first}, gelu=true](x) as layer
}}
"""
    graph, params = build(source, tmp_path)
    assert {k.split(".")[1] for k in params} == {"self_attn", "linear1", "linear2", "norm1", "norm2"}
    run_both(graph, params, {"x": np.random.default_rng(0).standard_normal((4, 2, 8)).astype(np.float32)}, tmp_path)
