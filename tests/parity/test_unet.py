"""examples/unet.arch against a small PyTorch U-Net (nn.Conv2d, nn.MaxPool2d,
nn.ConvTranspose2d, torch.cat of the skip connections).

The reference's `state_dict()`, saved with safetensors as it is, binds the example with
`--weights`; onnxruntime and the NumPy reference must give the reference's logits to
1e-4 (max abs, fp32) for a batch of two 3x64x64 images.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from typing import NamedTuple  # noqa: E402

import numpy as np  # noqa: E402
from parity_helpers import BATCH, Case, check_parity  # noqa: E402
from torch import nn  # noqa: E402

CHAN, SIZE, BASE, CLASSES = 3, 64, 8, 2


class UNetOutput(NamedTuple):
    logits: torch.Tensor


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, padding 1, each followed by ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


class UNet(nn.Module):
    """Depth 3: three 2x2 max-pool downsamplings, three 2x2 stride-2 transposed-conv
    upsamplings, each followed by concatenation with the encoder's map (upsampled
    channels first) and a conv block; a 1x1 convolution to class logits."""

    def __init__(self, chan: int = CHAN, base: int = BASE, classes: int = CLASSES) -> None:
        super().__init__()
        c1, c2, c3, c4 = base, 2 * base, 4 * base, 8 * base
        self.enc1 = ConvBlock(chan, c1)
        self.enc2 = ConvBlock(c1, c2)
        self.enc3 = ConvBlock(c2, c3)
        self.bottleneck = ConvBlock(c3, c4)
        self.pool = nn.MaxPool2d(2)
        self.up3 = nn.ConvTranspose2d(c4, c3, 2, stride=2)
        self.dec3 = ConvBlock(2 * c3, c3)
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = ConvBlock(2 * c2, c2)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = ConvBlock(2 * c1, c1)
        self.head = nn.Conv2d(c1, classes, 1)
        # He-normal weights keep the activations of order 1 through the depth (PyTorch's
        # default init shrinks them, and a small output would make the 1e-4 check weak);
        # non-zero biases, so that a mis-bound bias shows.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.in_channels * m.weight[0, 0].numel()
                nn.init.normal_(m.weight, std=(2 / fan_in) ** 0.5)
                nn.init.uniform_(m.bias, -0.1, 0.1)

    def forward(self, x):
        s1 = self.enc1(x)
        s2 = self.enc2(self.pool(s1))
        s3 = self.enc3(self.pool(s2))
        y = self.bottleneck(self.pool(s3))
        y = self.dec3(torch.cat([self.up3(y), s3], dim=1))
        y = self.dec2(torch.cat([self.up2(y), s2], dim=1))
        y = self.dec1(torch.cat([self.up1(y), s1], dim=1))
        return UNetOutput(self.head(y))


UNET = Case(
    "unet", {},
    UNet,
    lambda rng: {"x": rng.standard_normal((BATCH, CHAN, SIZE, SIZE)).astype(np.float32)},
    {"output": "logits"})


def test_unet_matches_torch(tmp_path):
    check_parity(UNET, tmp_path)


def test_unet_binds_every_tensor_of_the_state_dict():
    """Every tensor of the reference's state_dict is a parameter of the example, with the
    same shape, and nothing else is: `--weights` binds the file as it is."""
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    from parity_helpers import EXAMPLES

    graph = load_graph(str(EXAMPLES / "unet.arch"), SourceCache(), {})
    sd = UNet().state_dict()
    assert sorted(graph.params) == sorted(sd)
    params = {name: tuple(a.size.value for a in spec.type.axes) for name, spec in graph.params.items()}
    assert params == {k: tuple(v.shape) for k, v in sd.items()}
