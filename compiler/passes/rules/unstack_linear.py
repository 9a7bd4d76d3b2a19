"""A dense layer whose output is unstacked becomes one dense layer per slice.

    q, k, v = unstack(linear(x, w_qkv, b_qkv) over three)
      ->  q = linear(x, w_q, b_q), k = ..., v = ...   with w_q, ... = unstack(w_qkv over three)

when `three` is an output axis of the weight (ViT's and GPT-2's packed query/key/value
projection). The slices of the weight and bias are parameter-only (onnxruntime folds them
at load), so what goes away is the Split of the activations, a copy of the whole projection
per layer. The opposite rewrite, merging the separate Q, K and V projections of BERT or
LLaMA into one wide MatMul and a Split, was measured and not taken: onnxruntime's MLAS runs
three [M, 768] x [768, 768] products no slower than one [M, 768] x [768, 2304] (min of 60
rounds, batch 1, sequence 128, 2 threads: 1.8-2.1 ms three vs 2.0-2.8 ms merged with its
Split; batch 8: 36.7-37.9 vs 34.3-46.3 ms), as gated.py found for the gated MLP.
"""
from __future__ import annotations

from typing import Optional

from ..rewrite import Either, Match, Op, Rule, Var


# unstack(linear(x, w[, b]) over a) -> linear(x, w_i[, b_i]) for each slice i   (a an output axis of w)
class UnstackLinear(Rule):
    name, explain_misses = "unstack-linear", True
    pattern = Op("unstack", Either(Op("linear", Var("x"), Var("w"), name="mm"),
                                   Op("linear", Var("x"), Var("w"), Var("b"), name="mm")), name="unstack")

    def check(self, m: Match) -> Optional[str]:
        axis, w = m["unstack"].attrs["axis"], m["w"].type
        if not w.has(axis) or axis in m["mm"].attrs["axes"]:
            return f"`{axis}` is not an output axis of the weight"
        if len(w.names) < 3:
            return "each slice of the weight would be a vector"
        return None

    def rewrite(self, m, b):
        axis, count = m["unstack"].attrs["axis"], m["unstack"].attrs["count"]
        k = m["mm"].attrs["axes"]
        weights = b.emit("unstack", [m["w"]], axis=axis, count=count)
        bias = m.get("b")
        if bias is None:
            biases = [None] * count
        elif bias.type.has(axis):
            biases = b.emit("unstack", [bias], axis=axis, count=count)
        else:  # a bias broadcast over the slices: each slice adds all of it
            biases = [bias] * count
        return [b.emit1("linear", [m["x"], w] + ([] if c is None else [c]), axes=k) for w, c in zip(weights, biases)]


RULES = [UnstackLinear()]
