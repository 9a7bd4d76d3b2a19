"""Constant folding: what depends only on fixed sizes and constants is computed once, at
compile time, and becomes one `array` (an ONNX initializer).

Cases:
1. masks of fixed size (`causal(seq, key)` when `seq` is fixed), relative-position buckets,
   ALiBi slopes, rotary frequency tables, position ids of a fixed sequence;
2. arithmetic on scalar constants (`1 / sqrt(|head|)` of a fixed `head`);
3. not folded: anything reading an input or a parameter (weights stay weights; onnxruntime
   folds weight-only subgraphs at load), anything of a symbolic size, results over
   `MAX_ELEMENTS` (a table that big is cheaper to compute than to ship), and a lone scalar
   `const` (it already is a constant).

Folding runs the NumPy lowering of each folded op: the reference semantics are the NumPy
backend's, so a folded value is exactly what the unfolded graph computes there.
"""
from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Node, Value
from .manager import PassContext, PassResult, each_graph

MAX_ELEMENTS = 1 << 16
LEAVES = {"const", "array", "arange", "causal", "zeros", "axis_size"}  # ops that read no tensor


def _foldable(node: Node, constant: set[int]) -> bool:
    if node.op in ("param", "scan") or isinstance(node.attrs.get("body"), Graph):
        return False
    if not all(v.id in constant for v in node.inputs):
        return False
    if node.op in LEAVES and node.inputs:
        return False
    for v in node.outputs:
        sizes = [a.size.value for a in v.type.axes]
        if any(s is None for s in sizes) or math.prod(sizes) > MAX_ELEMENTS:
            return False
    return node.op != "axis_size" or node.attrs["size"].is_static


def fold_graph(graph: Graph) -> int:
    from archlang.backends.numpy_codegen import Evaluator, run_nodes  # the reference semantics
    constant: set[int] = set()
    producers: list[Node] = []
    for node in graph.nodes:
        if _foldable(node, constant):
            constant.update(v.id for v in node.outputs)
            producers.append(node)
    # Values read by something that stays: the frontier worth replacing.
    frontier: dict[int, Value] = {}
    for node in graph.nodes:
        if not all(v.id in constant for v in node.outputs):
            frontier.update({v.id: v for v in node.inputs if v.id in constant})
    frontier.update({v.id: v for _, v in graph.outputs if v.id in constant})
    worth = {i: v for i, v in frontier.items() if v.producer.op not in ("const", "array")}
    if not worth:
        return 0
    env: dict[int, Any] = {}
    run_nodes(_subgraph(graph, producers), Evaluator(graph, {}, {}), env)
    arrays: dict[Node, list[Node]] = {}
    mapping: dict[int, Value] = {}
    for vid, v in worth.items():
        old = v.producer
        new = graph.new_value(v.type, v.hint)
        new.producer = Node("array", [], {"value": env[vid], "type": v.type}, [new], old.span, old.scope)
        arrays.setdefault(old, []).append(new.producer)
        mapping[vid] = new
    graph.nodes = [n for old in graph.nodes for n in arrays.get(old, []) + [old]]
    graph.replace_uses(mapping)
    return len(mapping)


def _subgraph(graph: Graph, nodes: list[Node]) -> Graph:
    sub = Graph(graph.name, enclosing=graph)
    sub.symbols = graph.symbols
    sub.nodes = list(nodes)
    return sub


class FoldConstants:
    name = "fold-constants"
    summary = "compute what depends only on fixed sizes and constants at compile time"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        folded = sum(fold_graph(g) for g in list(each_graph(graph)))
        return PassResult(folded > 0, {"folded values": folded} if folded else {})
