"""examples/moe.arch: a sparse mixture-of-experts layer with top-k routing, checked the way
tests/test_constructs.py checks the other constructs (its helpers are imported):

1. onnxruntime runs the compiled model to the NumPy reference's numbers;
2. both equal a hand computation in float64 NumPy that loops over the tokens: the softmax
   gate, the k best experts by np.argsort, the renormalised gate values, and only those
   experts' SwiGLU MLPs, summed with those weights;
3. the routing is sparse: perturbing the weights of one expert changes exactly the
   outputs of the tokens that chose it.

Each holds as written (-O0, gathered weights) and at -O2 (dispatch-experts: the tokens
grouped by expert, one `expert_mlp`).

The weights are drawn with a standard deviation of 1/sqrt(fan-in), so the outputs are of
order one and the tolerance (1e-4, max abs) means something.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.compiler.passes import optimize

from test_constructs import build, check_hand, f64, run_both, sigmoid, softmax

SETS = {"default": {}, "k1": {"k": "1"}, "k3_of_8": {"expert": "8", "k": "3"}, "dense": {"k": "4"}}


def moe_params(graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in graph.params.items():
        shape = tuple(a.size.value for a in spec.type.axes)
        fan_in = shape[-1]  # every weight is stored [..., out, in], as torch.nn.Linear
        out[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return out


def moe_by_hand(x: np.ndarray, p: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The layer token by token; returns the output and each token's chosen experts."""
    batch, seq, embed = x.shape
    out = np.zeros((batch, seq, embed))
    chosen = np.zeros((batch, seq, k), dtype=np.int64)
    for b in range(batch):
        for s in range(seq):
            t = x[b, s]
            gate = softmax(p["router"] @ t)                   # router: [expert, embed]
            best = np.argsort(-gate, kind="stable")[:k]       # the k best, best first
            weights = gate[best] / gate[best].sum()           # renormalised, as Mixtral does
            for w, e in zip(weights, best):                   # only the chosen experts run
                a, u = p["w1"][e] @ t, p["w3"][e] @ t         # [hidden]
                out[b, s] += w * (p["w2"][e] @ (a * sigmoid(a) * u))
            chosen[b, s] = best
    return out, chosen


def inputs(seed: int = 3, batch: int = 2, seq: int = 5) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((batch, seq, 16)).astype(np.float32)}


def build_at(sets: dict, level: int):
    """The example's graph as written (-O0: each token gathers its experts' weights) or
    optimised (-O2: dispatch-experts groups the tokens by expert)."""
    graph, _ = build("moe", sets, noise=0)
    optimize(graph, level)
    assert ("expert_mlp" in [n.op for n in graph.nodes]) == (level == 2)
    return graph


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("name", list(SETS))
def test_moe_matches_hand_computation(name, level, tmp_path):
    sets = SETS[name]
    graph = build_at(sets, level)
    params = moe_params(graph)
    feed = inputs()
    got = run_both(graph, params, feed, tmp_path)
    k = int(sets.get("k", 2))
    want, chosen = moe_by_hand(f64(feed)["x"], f64(params), k)
    check_hand(got, {"output": want})
    if k < int(sets.get("expert", 4)):  # the tokens do not all pick the same experts
        assert len({tuple(sorted(c)) for c in chosen.reshape(-1, k).tolist()}) >= 3, chosen


@pytest.mark.parametrize("level", [0, 2])
def test_moe_only_runs_the_chosen_experts(level, tmp_path):
    """Perturbing one expert's weights moves exactly the tokens routed to it."""
    graph = build_at({}, level)
    params = moe_params(graph)
    feed = inputs(seed=5, batch=3, seq=6)
    before = run_both(graph, params, feed, tmp_path)
    _, chosen = moe_by_hand(f64(feed)["x"], f64(params), 2)
    expert = 1
    uses = (chosen == expert).any(axis=-1)                    # [batch, seq]
    assert uses.any() and not uses.all(), "the test needs tokens on both sides"
    rng = np.random.default_rng(9)
    changed = dict(params)
    for name in ("w1", "w2", "w3"):
        w = changed[name].copy()
        w[expert] += rng.standard_normal(w[expert].shape).astype(np.float32)
        changed[name] = w
    after = run_both(graph, changed, feed, tmp_path)
    for backend in ("numpy", "onnx"):
        old, new = before[backend]["output"], after[backend]["output"]
        np.testing.assert_array_equal(new[~uses], old[~uses], err_msg=f"{backend}: a token not routed to "
                                      f"expert {expert} changed")
        moved = np.abs(new[uses] - old[uses]).max(axis=-1)
        assert (moved > 1e-2).all(), f"{backend}: a token routed to expert {expert} did not move: {moved}"
