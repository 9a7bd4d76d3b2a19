"""Batch norm folded into the convolution before it (inference).

    batchnorm(conv(x, w[, c]), gamma, beta, mean, var)
      = conv(x, w * s, (c - mean) * s + beta)      with s = gamma / sqrt(var + eps)

per output channel, since a convolution is linear in its weight and each output channel
reads only its own filter. The new weight and bias are IR nodes on the parameters: the
pass never touches weight arrays (they are bound later), onnxruntime folds these nodes at
load, and the NumPy backend computes them (one product per weight element). Valid only
when the statistics are fixed: the batchnorm op is the inference form, and the rule also
declines when a statistic depends on the model's input (batch statistics).
"""
from __future__ import annotations

from typing import Optional

from ..rewrite import Either, Match, Op, Rule, Var

def _fixed(v) -> bool:
    """`v` depends on no model input (parameters and constants only): fixed at inference."""
    seen, todo = set(), [v]
    while todo:
        u = todo.pop()
        if u.producer is None:  # a model input (or a scan body's input)
            return False
        if id(u.producer) not in seen:
            seen.add(id(u.producer))
            todo.extend(u.producer.inputs)
    return True


# batchnorm(conv(x, w[, c])) -> conv(x, w * s, (c - mean) * s + beta),  s = gamma / sqrt(var + eps);
# also through the rename a block boundary puts between them (conv's `cout` is the batchnorm's `c`)
class FoldBatchnormIntoConv(Rule):
    name, explain_misses = "fold-batchnorm-into-conv", True
    conv = Either(Op("conv", Var("x"), Var("w"), name="conv"), Op("conv", Var("x"), Var("w"), Var("c"), name="conv"))
    pattern = Op("batchnorm", Either(conv, Op("rename", conv, name="rename")),
                 Var("gamma"), Var("beta"), Var("mean"), Var("var"), name="bn")

    def check(self, m: Match) -> Optional[str]:
        w = m["w"]
        for what in ("gamma", "beta", "mean", "var"):
            if not _fixed(m[what]):
                return f"the batchnorm's `{what}` depends on the input (batch statistics do not fold)"
        if not _fixed(w):
            return "the convolution's weight depends on the input (its scaling would run every time)"
        if "c" in m.bound and not _fixed(m["c"]):
            return "the convolution's bias depends on the input"
        if _conv_channel(m) != w.type.names[0]:
            return (f"the batchnorm normalises `{m['bn'].attrs['axes'][0]}`, not the convolution's output "
                    f"channels `{w.type.names[0]}`")
        return None

    def rewrite(self, m, b):
        bn, conv, w = m["bn"], m["conv"], m["w"]
        channel, out = bn.attrs["axes"][0], _conv_channel(m)

        def to_conv(v):  # a statistic over the batchnorm's channel axis, on the conv's
            return v if channel == out else b.emit1("rename", [v], mapping=((channel, out),))
        gamma, beta, mean, var = (to_conv(m[k]) for k in ("gamma", "beta", "mean", "var"))
        eps = b.const(float(bn.attrs.get("eps", 1e-5)), w.type.dtype)
        s = b.emit1("mul", [gamma, b.emit1("rsqrt", [b.emit1("add", [var, eps])])])
        centred = b.emit1("sub", [m["c"], mean]) if "c" in m.bound else b.emit1("neg", [mean])
        bias = b.emit1("add", [b.emit1("mul", [centred, s]), beta])
        y = b.emit1("conv", [m["x"], b.emit1("mul", [w, s]), bias], **conv.attrs)
        return b.emit1("rename", [y], **m["rename"].attrs) if "rename" in m.bound else y


def _conv_channel(m: Match) -> str:
    """The conv's name for the axis the batchnorm normalises."""
    channel = m["bn"].attrs["axes"][0]
    if "rename" in m.bound:
        return {new: old for old, new in m["rename"].attrs["mapping"]}.get(channel, channel)
    return channel


RULES = [FoldBatchnormIntoConv()]
