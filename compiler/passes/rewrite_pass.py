"""A pass that applies one family of rewrite rules everywhere, body graphs included."""
from __future__ import annotations

from typing import Sequence

from ..ir import Graph
from .manager import PassContext, PassResult, each_graph
from .rewrite import Rule, apply_rules


class RewritePass:
    def __init__(self, name: str, summary: str, rules: Sequence[Rule]):
        self.name, self.summary, self.rules = name, summary, list(rules)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        counts: dict[str, int] = {}
        for g in list(each_graph(graph)):
            for k, v in apply_rules(g, self.rules, ctx).counts.items():
                counts[k] = counts.get(k, 0) + v
        return PassResult(bool(counts), counts)
