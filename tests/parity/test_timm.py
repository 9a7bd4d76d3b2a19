"""The vision examples against timm's own models: ViT-B/16, ResNet-50 and MLP-Mixer B/16.

Each reference is a timm model (`timm.create_model(name, pretrained=False)`, or the same
class at a small size) with seeded random weights. Its `state_dict()` is saved with
safetensors as it is, every entry under its own name (batch norm's
`num_batches_tracked` included), and the example compiled with `--weights` that file
(through the Python API, as in parity_helpers) must give timm's logits (max abs <= 1e-4,
fp32) on onnxruntime and on the NumPy reference, for a batch of two random images. The
fast suite runs each example at a small `--set` size against the matching small timm
model; `-m slow` runs the default sizes at 224x224.

Random weights: every parameter gets N(0, 0.02) noise on top of timm's initialisation,
and so do batch norm's running statistics (the variance kept positive), so that a
tensor bound to the wrong place, or ignored, shows. Two adjustments keep the check
sharp, with logits of order one and torch's own fp32 rounding far below 1e-4:

- ResNet: running statistics left at timm's (0, 1) barely matter (permuting one
  layer's running_var moves the logits by 1e-5). So they are first measured, as
  training would, on a batch of random images (after the weight noise), and then
  perturbed: a permuted tensor now moves the logits by 6e-4 or (mostly) far more. timm's
  `zero_init_last` stays on (each block's last batch norm starts at weight 0, noise
  added): without it the random 16-block network is chaotic, and torch's own fp32
  logits are 8e-5 away from its fp64 ones.
- Small ViT and Mixer: at width 64, timm's init leaves ViT's pre-activations near 0,
  where exact and tanh GELU agree to 1e-6, and Mixer's zero-initialised head gives
  logits of 0.1; their linear weights are redrawn with std 1/sqrt(fan_in), as the
  transformers tests do (tanh GELU in place of exact GELU then fails both).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
from parity_helpers import BATCH, EXAMPLES, compare_with_reference, save_state_dict  # noqa: E402

NOISE = 0.02


@dataclass
class TimmCase:
    example: str                          # examples/NAME.arch
    sets: dict[str, str]                  # `--set` values (empty: the file's defaults)
    reference: Callable[[], "torch.nn.Module"]   # builds the timm model
    image: int                            # the images' side, in pixels
    wide: bool = False                    # redraw linear weights with std 1/sqrt(fan_in)
    seed: int = 0


def batchnorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def build_reference(case: TimmCase):
    """The timm model in eval mode, every parameter and running statistic random."""
    torch.manual_seed(case.seed)
    model = case.reference()
    with torch.no_grad():
        if case.wide:
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.normal_(0.0, m.in_features ** -0.5)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * NOISE)
        bns = batchnorms(model)
        if bns:
            # Running statistics that fit the weights: a cumulative average over one
            # training-mode pass on random images.
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None
            model.train()
            model(torch.randn(8, 3, case.image, case.image))
            for bn in bns:
                bn.momentum = 0.1
                bn.running_mean.add_(torch.randn_like(bn.running_mean) * NOISE)
                bn.running_var.add_(torch.randn_like(bn.running_var) * NOISE).abs_()
    return model.eval()


def check_timm(case: TimmCase, tmp_path) -> dict[str, float]:
    """Compile `case.example` bound to the timm model's state_dict(); both backends must
    give its logits to TOL. Returns the max abs errors, keyed `backend:output`."""
    t = time.perf_counter()
    model = build_reference(case)
    weights = tmp_path / f"{case.example}.safetensors"
    save_state_dict(model, weights)
    rng = np.random.default_rng(case.seed)
    image = rng.standard_normal((BATCH, 3, case.image, case.image)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(image)).numpy()    # timm returns the logits tensor
    del model
    return compare_with_reference(case.example, case.sets, weights, {"image": image}, {"output": want}, tmp_path,
                                  {"reference": time.perf_counter() - t}, against="timm")


# ---- the models ------------------------------------------------------------------------

def vit_small():
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=4, num_classes=10)


def resnet_small():
    from timm.models.resnet import Bottleneck, ResNet
    return ResNet(block=Bottleneck, layers=[3, 4, 6, 3], channels=(8, 16, 32, 64), num_classes=10)


def mixer_small():
    from timm.models.mlp_mixer import MlpMixer
    return MlpMixer(num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=64)


SMALL = {
    "vit": TimmCase("vit", {"height": "32", "width": "32", "embed": "64", "heads": "4", "depth": "2",
                            "classes": "10"}, vit_small, 32, wide=True),
    # The same stages as resnet50 ([3, 4, 6, 3] bottlenecks: the file names each block),
    # the bottlenecks 8x narrower (timm's plain stem is always 64 wide), on 64x64 images.
    "resnet50": TimmCase("resnet50", {"height": "64", "width": "64", "p1": "8", "p2": "16",
                                      "p3": "32", "p4": "64", "classes": "10"}, resnet_small, 64),
    "mixer": TimmCase("mixer", {"height": "32", "width": "32", "ph": "8", "pw": "8", "embed": "64",
                                "depth": "2", "classes": "10"}, mixer_small, 32, wide=True),
}

FULL = {
    "vit": TimmCase("vit", {}, lambda: timm.create_model("vit_base_patch16_224", pretrained=False), 224),
    "resnet50": TimmCase("resnet50", {}, lambda: timm.create_model("resnet50", pretrained=False), 224),
    "mixer": TimmCase("mixer", {}, lambda: timm.create_model("mixer_b16_224", pretrained=False), 224),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_matches_timm(name, tmp_path):
    check_timm(SMALL[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_matches_timm(name, tmp_path):
    check_timm(FULL[name], tmp_path)


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_binds_timm_state_dict(name):
    """At the default size, the example's stored names and shapes are exactly timm's
    state_dict() (types and checking only: nothing is run)."""
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    from archlang.compiler.weights import stored_shape

    graph = load_graph(str(EXAMPLES / f"{name}.arch"), SourceCache(), {})
    ours = {spec.source_name: stored_shape(spec) for spec in graph.params.values()}
    with torch.device("meta"):                            # shapes only, no memory
        theirs = {k: tuple(v.shape) for k, v in FULL[name].reference().state_dict().items()}
    assert ours == theirs
