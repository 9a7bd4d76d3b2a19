"""Attention masks over query/key position axes."""
from __future__ import annotations

from archlang.grammar import ast as A

from ..axes import TensorType
from ..diagnostics import error
from .registry import OpDef, register


@register
class Causal(OpDef):
    name = "causal"
    summary = ("`causal(query, key)`: an additive f32 mask over two position axes, 0 where key <= query "
               "and -inf after it; add it to attention scores before softmax")
    example = "scores = scores + causal(seq, key)"

    def build(self, b, call):
        if len(call.args) != 2 or not all(isinstance(a, A.Var) for a in call.args) or call.over is not None:
            raise error("`causal` takes the query and key axes, as in `causal(seq, key)`", call.span)
        q, k = (b.axis(a.name, a.span) for a in call.args)
        if q.name == k.name:
            raise error(f"`causal` needs two different axes (query and key positions), but both are `{q.name}`",
                        call.span,
                        f"declare the key axis with `axis key ~ {q.name}` and `rename` keys to it")
        # Under `--dtype f16|bf16` the mask is made in that dtype, to meet the scores it is added to.
        dtype = {"dtype": b.float_dtype} if b.float_dtype != "f32" else {}
        return b.emit("causal", [], {"query": q, "key": k, **dtype}, call.span)

    def infer(self, ins, attrs, span):
        return [TensorType(attrs.get("dtype", "f32"), (attrs["query"], attrs["key"]))]

    def numpy(self, e, node, ins):
        return [e.call("causal_mask", e.size(node.attrs["query"].size), e.size(node.attrs["key"].size))]

    def onnx(self, g, node, ins):
        from .attention_onnx import causal_mask
        return [causal_mask(g, node.attrs["query"], node.attrs["key"])]
