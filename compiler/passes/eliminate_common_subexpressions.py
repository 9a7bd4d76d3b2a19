"""Common-subexpression elimination: one node per (op, inputs, attributes).

Cases:
1. the causal mask, position ids and size computations each unrolled layer rebuilds;
2. a parameter read twice (`repeat shared` reads each weight once per copy);
3. equal scalar constants.
Nodes holding a body graph (scan) are never merged: their bodies are compared by identity.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph
from .manager import PassContext, PassResult, each_graph


_PLAIN = (str, int, bool, type(None))


def attrs_key(value: Any) -> Any:
    """A hashable, exact stand-in for an attribute value."""
    if type(value) in _PLAIN:  # the common case first: names, sizes, flags
        return (type(value).__name__, value)
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return tuple(sorted((k, attrs_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(attrs_key(v) for v in value)
    if isinstance(value, float):
        return ("float", value.hex() if value == value else "nan")
    if isinstance(value, Graph):
        return ("graph", id(value))
    return (type(value).__name__, value)


def merge_common(graph: Graph) -> int:
    seen: dict[tuple, list] = {}
    alias: dict[int, Any] = {}
    kept = []
    for node in graph.nodes:
        node.inputs = [alias.get(v.id, v) for v in node.inputs]
        key = (node.op, tuple(v.id for v in node.inputs), attrs_key(node.attrs))
        if key in seen and [v.type for v in seen[key]] == [v.type for v in node.outputs]:
            for old, new in zip(node.outputs, seen[key]):
                alias[old.id] = new
            continue
        seen.setdefault(key, node.outputs)
        kept.append(node)
    graph.outputs = [(n, alias.get(v.id, v)) for n, v in graph.outputs]
    merged = len(graph.nodes) - len(kept)
    graph.nodes = kept
    return merged


class EliminateCommonSubexpressions:
    name = "eliminate-common-subexpressions"
    summary = "compute each (op, inputs, attributes) once"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        merged = sum(merge_common(g) for g in list(each_graph(graph)))
        return PassResult(merged > 0, {"merged nodes": merged} if merged else {})
