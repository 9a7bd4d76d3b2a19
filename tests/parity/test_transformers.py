"""The examples against transformers' own models: GPT-2, BERT, LLaMA and ALBERT.

Each reference is built from its config with seeded random weights, its `state_dict()`
is saved with safetensors as it is, and the example compiled with those weights must
give the reference's outputs (max abs <= 1e-4, fp32) on onnxruntime and on the NumPy
reference, for batch 2 and sequence 32. The fast suite runs each model at a small
`--set` size against a reference built from the matching small config; `-m slow` runs
the examples' default sizes.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
from parity_helpers import (EXAMPLES, TOL, Case, build_reference, check_parity, padding_mask,  # noqa: E402
                            run_reference, save_state_dict, token_ids)


# ---- GPT-2: GPT2Model, last_hidden_state ---------------------------------------------

def gpt2(sets, **config) -> Case:
    vocab = config.get("vocab_size", 50257)
    return Case(
        "gpt2", sets,
        lambda: transformers.GPT2Model(transformers.GPT2Config(use_cache=False, **config)),
        lambda rng: {"tokens": token_ids(rng, vocab)},
        {"output": "last_hidden_state"},
        reference_inputs={"tokens": "input_ids"})


# ---- BERT: BertModel with a padding mask; last_hidden_state and pooler_output ------------

def bert(sets, **config) -> Case:
    vocab = config.get("vocab_size", 30522)
    return Case(
        "bert", sets,
        lambda: transformers.BertModel(transformers.BertConfig(**config)),
        lambda rng: {"input_ids": token_ids(rng, vocab), "attention_mask": padding_mask()},
        {"last_hidden_state": "last_hidden_state", "pooler_output": "pooler_output"})


# ---- LLaMA: LlamaModel (grouped-query attention, rotary), last_hidden_state -------------

LLAMA = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=2, vocab_size=1000, max_position_embeddings=128, rms_norm_eps=1e-6,
             attention_bias=False, use_cache=False,   # rope theta: the default, 10000
             initializer_range=1 / 16)              # 1/sqrt(hidden): pre-activations of order 1


def llama(sets, **overrides) -> Case:
    config = {**LLAMA, **overrides}
    return Case(
        "llama", sets,
        lambda: transformers.LlamaModel(transformers.LlamaConfig(**config)),
        lambda rng: {"input_ids": token_ids(rng, config["vocab_size"])},
        {"output": "last_hidden_state"})


# ---- ALBERT: AlbertModel (one layer shared by all), padding mask ------------------------

def albert(sets, **config) -> Case:
    vocab = config.get("vocab_size", 30000)
    return Case(
        "albert", sets,
        lambda: transformers.AlbertModel(transformers.AlbertConfig(**config)),
        lambda rng: {"input_ids": token_ids(rng, vocab), "attention_mask": padding_mask()},
        {"last_hidden_state": "last_hidden_state", "pooler_output": "pooler_output"})


# The small configs' hidden size is 64: HF's initializer_range 0.02 would keep every
# pre-activation near 0, where gelu and gelu_tanh (or a wrong softmax scale) agree to 1e-6.
# 1/sqrt(64) makes them of order 1, so the comparison can tell such details apart.
WIDE = 0.125

SMALL = {
    "gpt2": gpt2({"layers": "2", "embed": "64", "heads": "4", "vocab": "100"},
                 n_layer=2, n_embd=64, n_head=4, vocab_size=100, bos_token_id=0, eos_token_id=0,
                 initializer_range=WIDE),
    "bert": bert({"layers": "2", "embed": "64", "heads": "4", "vocab": "1000"},
                 num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256,
                 vocab_size=1000, initializer_range=WIDE),
    "llama": llama({"layers": "2", "embed": "64", "heads": "4", "kv_heads": "2", "inter": "128",
                    "vocab": "100"},
                   num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, vocab_size=100, initializer_range=WIDE),
    "albert": albert({"layers": "3", "emb": "32", "hidden": "64", "heads": "4", "inter": "128",
                      "vocab": "1000"},
                     num_hidden_layers=3, embedding_size=32, hidden_size=64, num_attention_heads=4,
                     intermediate_size=128, vocab_size=1000, initializer_range=WIDE),
}

FULL = {
    "gpt2": gpt2({}),                 # GPT2Config(): GPT-2 small, 124M
    "bert": bert({}),                 # BertConfig(): BERT-base, 110M
    "llama": llama({}),               # LLAMA above, the example's default sizes
    "albert": albert({}),             # AlbertConfig(): the xxlarge shape, 222.6M (one shared layer)
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_matches_transformers(name, tmp_path):
    check_parity(SMALL[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_matches_transformers(name, tmp_path):
    check_parity(FULL[name], tmp_path)


@pytest.mark.parametrize("backend", ["onnx", "numpy"])
def test_cli_run_with_weights_matches_transformers(backend, tmp_path):
    """The user's path: `archc run --weights W.safetensors --inputs IN.npz` on the CLI."""
    case = SMALL["bert"]
    model = build_reference(case)
    save_state_dict(model, tmp_path / "bert.safetensors")
    inputs = case.inputs(np.random.default_rng(1))
    np.savez(tmp_path / "in.npz", **inputs)
    want = run_reference(model, inputs, list(case.outputs.values()), case.reference_inputs)
    sets = [a for k, v in case.sets.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run(
        [sys.executable, "-m", "archlang.compiler.cli", "run", str(EXAMPLES / "bert.arch"), *sets,
         "--weights", "bert.safetensors", "--inputs", "in.npz", "--output", "out.npz", "--backend", backend],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "out.npz") as got:
        assert sorted(got.files) == sorted(case.outputs)
        for name, field_ in case.outputs.items():
            assert np.max(np.abs(got[name] - want[field_])) <= TOL, name
