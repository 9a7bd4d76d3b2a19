"""`use "norm"` (stdlib/norm.arch) against torch.nn.GroupNorm, InstanceNorm1d/2d/3d and
Dropout: each block bound to the torch module's state_dict as it is (random weights, eval
mode), both backends within 1e-4 max abs of torch (tests/parity/stdlib_parity.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors.torch")

import numpy as np  # noqa: E402
from stdlib_parity import check_block, randomize, torch_outputs  # noqa: E402
from torch import nn  # noqa: E402

BATCH, CHAN = 2, 6
SPATIAL = {1: "t", 2: "h, w", 3: "d, h, w"}
SIZES = {1: "t = 9", 2: "h = 5, w = 4", 3: "d = 3, h = 4, w = 2"}
SHAPES = {1: (9,), 2: (5, 4), 3: (3, 4, 2)}


def source(call: str, rank: int) -> str:
    axes = SPATIAL[rank]
    return f"""use "norm"
axis batch
axis c = {CHAN}, {SIZES[rank]}

model M(x: f32[batch, c, {axes}]) -> f32[batch, c, {axes}] {{
  return {call}(x) as ""
}}
"""


def check(call: str, rank: int, module, tmp_path, channels_last: bool = False) -> None:
    x = np.random.default_rng(rank).standard_normal((BATCH, CHAN) + SHAPES[rank]).astype(np.float32) * 3 + 1
    (want,) = torch_outputs(module, x)
    check_block(source(call, rank), module, {"x": x}, {"output": want}, tmp_path)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_group_norm_2d(groups, tmp_path):
    module = randomize(nn.GroupNorm(groups, CHAN, eps=1e-5))
    check(f"GroupNorm[c, h, w, num_groups={groups}]", 2, module, tmp_path)


@pytest.mark.parametrize("rank, block", [(1, "GroupNorm1d[c, t"), (3, "GroupNorm3d[c, d, h, w")])
def test_group_norm_other_ranks(rank, block, tmp_path):
    module = randomize(nn.GroupNorm(3, CHAN, eps=1e-3))
    check(f"{block}, num_groups=3, eps=1e-3]", rank, module, tmp_path)


def test_group_norm_without_affine(tmp_path):
    check("GroupNorm[c, h, w, num_groups=2, affine=false]", 2, nn.GroupNorm(2, CHAN, affine=False).eval(), tmp_path)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm(rank, affine, tmp_path):
    module = [None, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d][rank](CHAN, affine=affine)
    module = randomize(module)
    assert bool(module.state_dict()) == affine   # torch's default: no parameters at all
    check(f"InstanceNorm{rank}d[c, {SPATIAL[rank]}, affine={'true' if affine else 'false'}]", rank, module, tmp_path)


def test_dropout_is_the_identity_at_inference(tmp_path):
    check("Dropout[p=0.3]", 2, nn.Dropout(0.3).eval(), tmp_path)


def test_group_norm_on_channels_last(tmp_path):
    """The channel axis is found by name: a [batch, h, w, c] input gives torch's numbers,
    transposed."""
    module = randomize(nn.GroupNorm(2, CHAN))
    x = np.random.default_rng(0).standard_normal((BATCH, CHAN, 5, 4)).astype(np.float32)
    (want,) = torch_outputs(module, x)
    src = f"""use "norm"
axis batch
axis c = {CHAN}, h = 5, w = 4

model M(x: f32[batch, h, w, c]) -> f32[batch, h, w, c] {{
  return GroupNorm[c, h, w, num_groups=2](x) as ""
}}
"""
    check_block(src, module, {"x": x.transpose(0, 2, 3, 1).copy()}, {"output": want.transpose(0, 2, 3, 1)}, tmp_path)
