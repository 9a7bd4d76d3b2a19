"""`archc summary`'s totals against torch's own counts of the same models.

For each small transformers and timm model of the parity suite (random weights, eval
mode), the summary of the matching example at the same `--set` sizes must report:
- parameters: the elements of the reference's state_dict (each stored tensor once, so
  tied weights count once, and batch norm's running statistics count as torchinfo's
  "params + buffers" would);
- multiply-accumulates: half the FLOPs torch's `FlopCounterMode` counts in one forward pass
  at the same batch and sequence (it counts matmuls, convolutions and attention's two
  products, as our cost rules do). Attention runs in transformers' eager form, which the
  counter sees through (it does not count the CPU scaled-dot-product kernel).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
from parity_helpers import BATCH, EXAMPLES, SEQ, build_reference  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from archlang.compiler.diagnostics import SourceCache  # noqa: E402
from archlang.compiler.driver import load_graph  # noqa: E402
from archlang.compiler.summary import evaluate, summarize  # noqa: E402


def stored_elements(model) -> int:
    first = {}
    for tensor in model.state_dict().values():
        first.setdefault(tensor.data_ptr(), tensor.numel())
    return sum(first.values())


def torch_macs(model, inputs: dict) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    return counter.get_total_flops() // 2


def our_counts(example: str, sets: dict[str, str]) -> tuple[int, int]:
    summary = summarize(load_graph(str(EXAMPLES / f"{example}.arch"), SourceCache(), sets))
    return summary.total.params, evaluate(summary.total.macs, {})


def transformers_cases():
    from test_transformers import SMALL
    return SMALL


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "albert"])
def test_transformers_counts(name):
    case = transformers_cases()[name]
    model = build_reference(case)
    model.set_attn_implementation("eager")
    inputs = case.inputs(np.random.default_rng(0))
    feeds = {case.reference_inputs.get(k, k): torch.from_numpy(v) for k, v in inputs.items()}
    params, macs = our_counts(case.example, dict(case.sets, batch=str(BATCH), seq=str(SEQ)))
    assert params == stored_elements(model)
    assert macs == torch_macs(model, feeds)


@pytest.mark.parametrize("name", ["vit", "resnet50", "mixer"])
def test_timm_counts(name):
    pytest.importorskip("timm")
    from test_timm import SMALL, build_reference as build_timm
    case = SMALL[name]
    model = build_timm(case)
    for m in model.modules():          # attention as two matmuls, which the counter sees
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    image = torch.zeros(BATCH, 3, case.image, case.image)
    params, macs = our_counts(case.example, dict(case.sets, batch=str(BATCH)))
    assert params == stored_elements(model)
    assert macs == torch_macs(model, {"x": image})
