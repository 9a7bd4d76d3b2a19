"""examples/hybrid.arch against a PyTorch module written here: convolution stages (ResNet
basic blocks), a strided convolution that downsamples, attention stages over the flattened
positions, mean pooling and a linear head. The module's `state_dict()` (random weights and
running statistics) binds the example as it is; both backends must give its logits
(max abs <= 1e-4, fp32).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import numpy as np  # noqa: E402
from parity_helpers import BATCH, compare_with_reference, save_state_dict  # noqa: E402


class ConvBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class MLP(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class AttentionBlock(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.q, self.k, self.v, self.proj = (nn.Linear(c, c) for _ in range(4))
        self.mlp = MLP(c, 2 * c)

    def forward(self, x):
        b, t, c = x.shape
        h = self.norm1(x)
        q, k, v = (m(h).view(b, t, self.heads, c // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v))
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(o)
        return x + self.mlp(self.norm2(x))


class Hybrid(nn.Module):
    def __init__(self, c1=32, c2=64, heads=4, classes=10, conv_blocks=2, attention_blocks=2):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, c1, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c1)
        self.stage1 = nn.ModuleList(ConvBlock(c1) for _ in range(conv_blocks))
        self.down, self.down_bn = nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2)
        self.stage2 = nn.ModuleList(AttentionBlock(c2, heads) for _ in range(attention_blocks))
        self.norm, self.head = nn.LayerNorm(c2), nn.Linear(c2, classes)

    def forward(self, images):
        x = F.relu(self.stem_bn(self.stem(images)))
        for block in self.stage1:
            x = block(x)
        x = F.relu(self.down_bn(self.down(x)))
        t = x.flatten(2).transpose(1, 2)              # [batch, h * w, c]: row-major positions
        for block in self.stage2:
            t = block(t)
        return self.head(self.norm(t.mean(1)))


def test_hybrid_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = Hybrid()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    weights = tmp_path / "hybrid.safetensors"
    save_state_dict(model, weights)
    images = np.random.default_rng(0).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(images)).numpy()
    compare_with_reference("hybrid", {}, weights, {"images": images}, {"output": want}, tmp_path, {},
                           against="the PyTorch module")
