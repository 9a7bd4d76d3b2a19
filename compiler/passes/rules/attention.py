"""Attention fusion: the scores, their scale and biases, the softmax and the weighted sum of
values become one `attention` op (compiler/ops/attention.py), whatever the axes are named.

    softmax((q @ k over D) / c + b1 + ... + causal(seq, key) over key) @ v over key
      -> attention(q, k, v, b1 + ...; depth=D, key=key, scale=1/c, causal=seq)

The scale may be `/ c`, `* c` or absent; any number of additive terms in any order become
one bias; a `causal(query, key)` term over axes of equal length becomes the op's causal flag
(onnxruntime then never builds the mask). Grouped-query attention (a `group` axis only the
queries carry) and several depth axes (rotary's `two, half`) fit the same rule.
"""
from __future__ import annotations

from typing import Optional

from ...ops.attention import why_not
from ..rewrite import AddChain, Const, Either, Match, Op, Rule, Var, scalar_value

_scores = Op("contract", Var("q"), Var("k"), name="scores")
_scaled = Either(Op("div", _scores, Const("c"), name="divide"), Op("mul", _scores, Const("c"), name="multiply"),
                 _scores)


def _parts(m: Match):
    """(q, k, key axis, depth axes, scale, causal query axis or None, bias terms)."""
    q, k = m["q"], m["k"]
    key = m["softmax"].attrs["axes"][0]
    if q.type.has(key) and not k.type.has(key):
        q, k = k, q  # written `k @ q`
    scale = 1.0
    if m.get("divide") is not None:
        scale = 1.0 / scalar_value(m["c"])
    elif m.get("multiply") is not None:
        scale = scalar_value(m["c"])
    causal, terms = None, []
    for t in m["biases"]:
        node = t.producer
        if (causal is None and node is not None and node.op == "causal" and node.attrs["key"].name == key
                and q.type.has(node.attrs["query"].name)
                and node.attrs["query"].size == node.attrs["key"].size):
            causal = node.attrs["query"].name
        else:
            terms.append(t)
    return q, k, key, tuple(m["scores"].attrs["axes"]), scale, causal, terms


class FuseAttention(Rule):
    name = "attention"
    explain_misses = True
    pattern = Op("contract", Op("softmax", AddChain(_scaled, into="biases"), name="softmax"), Var("v"), name="values")

    def check(self, m: Match) -> Optional[str]:
        key = m["softmax"].attrs["axes"]
        if len(key) != 1:
            return "the softmax is over several axes"
        if tuple(m["values"].attrs["axes"]) != tuple(key):
            return f"the values are summed over {', '.join(m['values'].attrs['axes'])}, not the softmax axis `{key[0]}`"
        c = m.get("c")
        if c is not None and (m["c"].type.axes or scalar_value(c) in (0.0, None)):
            return "the scale is not a non-zero scalar constant"
        q, k, key, depth, scale, causal, terms = _parts(m)
        if not k.type.has(key):
            return f"the keys lack the softmax axis `{key}`"
        scores = m["scores"].outputs[0].type
        for t in terms:
            if not all(scores.has(a) for a in t.type.names) or t.type.dtype != scores.dtype:
                return f"a bias term ({t.type.describe()}) has axes or a dtype the scores lack"
        return why_not(q.type, k.type, m["v"].type, depth, key)

    def rewrite(self, m, b):
        q, k, key, depth, scale, causal, terms = _parts(m)
        bias = None
        for t in terms:
            bias = t if bias is None else b.emit1("add", [bias, t])
        attrs = dict(depth=depth, key=key, scale=scale)
        if causal is not None:
            attrs["causal"] = causal
        return b.emit1("attention", [q, k, m["v"]] + ([bias] if bias is not None else []), **attrs)


RULES = [FuseAttention()]
