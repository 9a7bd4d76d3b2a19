"""`use "attention"` (stdlib/attention.arch) against torch.nn.MultiheadAttention and
torch.nn.TransformerEncoderLayer: each block bound to the torch module's state_dict as it is
(random weights, eval mode), both backends within 1e-4 max abs of torch
(tests/parity/stdlib_parity.py). batch_first and seq-first are two axis orders of one block."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors.torch")

import numpy as np  # noqa: E402
from stdlib_parity import check_block, randomize, torch_outputs  # noqa: E402
from torch import nn  # noqa: E402

BATCH, SEQ, MEM, EMBED, HEADS, FF = 2, 5, 7, 8, 2, 16


def inputs(*shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(len(shapes))
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def test_self_attention_batch_first(tmp_path):
    attn = randomize(nn.MultiheadAttention(EMBED, HEADS, batch_first=True))
    (x,) = inputs((BATCH, SEQ, EMBED))
    want = torch_outputs(attn, x, x, x, need_weights=False)[0]
    src = f"""use "attention"
axis batch, seq
axis embed = {EMBED}

model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {{
  return MultiheadAttention[seq, seq, embed, num_heads={HEADS}](x, x, x) as ""
}}
"""
    check_block(src, attn, {"x": x}, {"output": want}, tmp_path)


def test_cross_attention_seq_first_without_bias(tmp_path):
    """torch's default layout [seq, batch, embed], keys longer than queries, bias=False (no
    in_proj_bias, no out_proj.bias)."""
    attn = randomize(nn.MultiheadAttention(EMBED, HEADS, bias=False))
    assert sorted(attn.state_dict()) == ["in_proj_weight", "out_proj.weight"]
    x, mem, val = inputs((SEQ, BATCH, EMBED), (MEM, BATCH, EMBED), (MEM, BATCH, EMBED))
    want = torch_outputs(attn, x, mem, val, need_weights=False)[0]
    src = f"""use "attention"
axis batch, seq, mem
axis embed = {EMBED}

model M(x: f32[seq, batch, embed], m: f32[mem, batch, embed], v: f32[mem, batch, embed]) -> f32[seq, batch, embed] {{
  return MultiheadAttention[seq, mem, embed, num_heads={HEADS}, bias=false](x, m, v) as ""
}}
"""
    check_block(src, attn, {"x": x, "m": mem, "v": val}, {"output": want}, tmp_path)


def test_causal_self_attention(tmp_path):
    attn = randomize(nn.MultiheadAttention(EMBED, HEADS, batch_first=True))
    (x,) = inputs((BATCH, SEQ, EMBED))
    mask = nn.Transformer.generate_square_subsequent_mask(SEQ)
    want = torch_outputs(attn, x, x, x, need_weights=False, attn_mask=mask, is_causal=True)[0]
    src = f"""use "attention"
axis batch, seq
axis embed = {EMBED}

model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {{
  return MultiheadAttention[seq, seq, embed, num_heads={HEADS}, causal=true](x, x, x) as ""
}}
"""
    check_block(src, attn, {"x": x}, {"output": want}, tmp_path)


def test_key_padding_mask(tmp_path):
    attn = randomize(nn.MultiheadAttention(EMBED, HEADS, batch_first=True))
    (x,) = inputs((BATCH, SEQ, EMBED))
    pad = np.zeros((BATCH, SEQ), dtype=bool)
    pad[1, 3:] = True        # the second sequence is two positions shorter
    pad[0, 1] = True         # and one key inside the first is masked
    want = torch_outputs(attn, x, x, x, need_weights=False, key_padding_mask=torch.from_numpy(pad))[0]
    src = f"""use "attention"
axis batch, seq
axis embed = {EMBED}

model M(x: f32[batch, seq, embed], pad: bool[batch, seq]) -> f32[batch, seq, embed] {{
  return MultiheadAttentionPadded[seq, seq, embed, num_heads={HEADS}](x, x, x, pad) as ""
}}
"""
    check_block(src, attn, {"x": x, "pad": pad}, {"output": want}, tmp_path)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer(norm_first, activation, tmp_path):
    layer = randomize(nn.TransformerEncoderLayer(EMBED, HEADS, FF, activation=activation, batch_first=True,
                                                 norm_first=norm_first, layer_norm_eps=1e-5))
    (x,) = inputs((BATCH, SEQ, EMBED))
    (want,) = torch_outputs(layer, x)
    options = f"nhead={HEADS}, norm_first={str(norm_first).lower()}, gelu={str(activation == 'gelu').lower()}"
    src = f"""use "attention"
axis batch, seq
axis embed = {EMBED}, ff = {FF}

model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {{
  return TransformerEncoderLayer[seq, embed, ff, {options}](x) as ""
}}
"""
    check_block(src, layer, {"x": x}, {"output": want}, tmp_path)


def test_transformer_encoder_layer_seq_first_causal(tmp_path):
    """torch's default [seq, batch, embed] layout, with a causal mask (`is_causal=True`)."""
    layer = randomize(nn.TransformerEncoderLayer(EMBED, HEADS, FF))
    (x,) = inputs((SEQ, BATCH, EMBED))
    mask = nn.Transformer.generate_square_subsequent_mask(SEQ)
    (want,) = torch_outputs(layer, x, src_mask=mask, is_causal=True)
    src = f"""use "attention"
axis batch, seq
axis embed = {EMBED}, ff = {FF}

model M(x: f32[seq, batch, embed]) -> f32[seq, batch, embed] {{
  return TransformerEncoderLayer[seq, embed, ff, nhead={HEADS}, causal=true](x) as ""
}}
"""
    check_block(src, layer, {"x": x}, {"output": want}, tmp_path)
