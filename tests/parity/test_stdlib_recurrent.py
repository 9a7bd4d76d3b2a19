"""`use "recurrent"` (stdlib/recurrent.arch) against torch.nn.LSTM and torch.nn.GRU with
`num_layers` and `bidirectional`: each block bound to the torch module's state_dict as it is
(`weight_ih_l0`, ..., `bias_hh_l1_reverse`; random weights, eval mode), both backends within
1e-4 max abs of torch's `output` (tests/parity/stdlib_parity.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors.torch")

import numpy as np  # noqa: E402
from stdlib_parity import check_block, randomize, torch_outputs  # noqa: E402
from torch import nn  # noqa: E402

BATCH, SEQ, EMBED, HIDDEN = 2, 6, 5, 4


def source(block: str, options: str, bidirectional: bool, batch_first: bool = True) -> str:
    out = "feature" if bidirectional else "hidden"
    x = "batch, seq" if batch_first else "seq, batch"
    return f"""use "recurrent"
axis batch, seq
axis embed = {EMBED}, hidden = {HIDDEN}, feature = 2 * hidden

model M(x: f32[{x}, embed]) -> f32[{x}, {out}] {{
  return {block}[seq, embed, hidden, {out}, {options}, bidirectional={str(bidirectional).lower()}](x) as ""
}}
"""


CASES = [  # (num_layers, bidirectional)
    (1, False), (1, True), (2, False), (3, True),
]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("num_layers, bidirectional", CASES)
def test_recurrent_matches_torch(kind, num_layers, bidirectional, tmp_path):
    module = randomize(getattr(nn, kind)(EMBED, HIDDEN, num_layers=num_layers, batch_first=True,
                                         bidirectional=bidirectional))
    x = np.random.default_rng(num_layers).standard_normal((BATCH, SEQ, EMBED)).astype(np.float32)
    output = torch_outputs(module, x)[0]
    check_block(source(kind, f"num_layers={num_layers}", bidirectional), module, {"x": x}, {"output": output}, tmp_path)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_seq_first_without_bias(kind, tmp_path):
    """torch's default layout [seq, batch, embed], and bias=False (no bias_* tensors)."""
    module = randomize(getattr(nn, kind)(EMBED, HIDDEN, num_layers=2, bias=False, bidirectional=True))
    assert not any(k.startswith("bias") for k in module.state_dict())
    x = np.random.default_rng(0).standard_normal((SEQ, BATCH, EMBED)).astype(np.float32)
    output = torch_outputs(module, x)[0]
    src = source(kind, "num_layers=2, bias=false", True, batch_first=False)
    check_block(src, module, {"x": x}, {"output": output}, tmp_path)
