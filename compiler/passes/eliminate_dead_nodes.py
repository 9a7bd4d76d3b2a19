"""Dead-code elimination: drop every node no graph output depends on.

Cases:
1. a value the model computes and never uses (`archc` warns about these in source too);
2. what a rewrite left behind: the matched nodes whose uses moved to the replacement;
3. inside body graphs (scan steps), the same, against the body's outputs.
Every op is pure, so a node whose results nobody reads can always go.
"""
from __future__ import annotations

from ..ir import Graph
from .manager import PassContext, PassResult, each_graph


def eliminate_dead_nodes(graph: Graph) -> int:
    """Removes dead nodes from `graph` (not its bodies); returns how many."""
    live = {v.id for _, v in graph.outputs}
    kept = []
    for node in reversed(graph.nodes):
        if any(v.id in live for v in node.outputs):
            kept.append(node)
            live.update(v.id for v in node.inputs)
    removed = len(graph.nodes) - len(kept)
    graph.nodes = kept[::-1]
    return removed


class EliminateDeadNodes:
    name = "eliminate-dead-nodes"
    summary = "drop nodes no output depends on"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        removed = sum(eliminate_dead_nodes(g) for g in list(each_graph(graph)))
        return PassResult(removed > 0, {"dead nodes": removed} if removed else {})
