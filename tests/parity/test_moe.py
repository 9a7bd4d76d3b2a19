"""examples/moe.arch against a PyTorch mixture-of-experts layer written as Mixtral's
`MixtralSparseMoeBlock` runs it (tests/parity/moe_reference.py: softmax router, top-k with
renormalised gate values, SwiGLU experts, dispatch with `index_add_`), random weights.

Its `state_dict()` binds the example with `--weights`; at -O0 (each token gathers its
experts' weights) and -O2 (dispatch-experts: tokens grouped by expert) onnxruntime and the
NumPy reference must give the layer's output to 1e-4 (max abs, fp32), batch 2, sequence 32.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
from moe_reference import TorchMoE  # noqa: E402
from parity_helpers import BATCH, SEQ, compare_with_reference, save_state_dict  # noqa: E402

# experts, k, embed, hidden
CONFIGS = {"8 experts, k=2": (8, 2, 16, 48), "4 experts, k=1": (4, 1, 24, 32), "6 experts, k=3": (6, 3, 16, 32)}


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_moe_matches_torch(tmp_path, config, level):
    experts, k, embed, hidden = CONFIGS[config]
    model = TorchMoE(experts, k, embed, hidden, seed=1).eval()
    weights = tmp_path / "moe.safetensors"
    save_state_dict(model, weights)
    x = np.random.default_rng(2).standard_normal((BATCH, SEQ, embed)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        chosen = torch.topk(torch.from_numpy(x) @ model.router.T, k, dim=-1).indices.numpy()
    assert len(np.unique(chosen)) == experts, "every expert should see some tokens"
    sets = {"expert": str(experts), "k": str(k), "embed": str(embed), "hidden": str(hidden)}
    compare_with_reference("moe", sets, weights, {"x": x}, {"output": want}, tmp_path, {},
                           against="torch's MoE layer", level=level)
