"""Derived parameters computed once the weights are bound.

Some passes rewrite a weight as arithmetic on parameters: `fold-batchnorm` turns
`batchnorm(conv(x, w))` into `conv(x, w * s, (c - mean) * s + beta)` with
`s = gamma / sqrt(var + eps)`. The passes never see weight values, so the IR keeps the
arithmetic; onnxruntime would fold it at load, but the file would carry the original
parameters plus ~8 nodes per folded layer (ResNet-50: 600 nodes instead of 176), and every
session would redo the work. Once the values are bound (`archc compile`), `fold_parameters`
computes each such value and the graph reads it as a parameter of its own.

Folded: elementwise arithmetic (and renames) on float parameters and scalar constants, and
with `slices` the slices `unstack-linear` takes of a packed weight (the file then holds the
query, key and value weights apart, rather than Gathers onnxruntime would fold at load).
Only where something is computed: a parameter read through a rename or a transpose alone
stays what it is. --weights-link passes `slices=False`: a slice of a stored weight is
usually not contiguous, and copying it would defeat the link. Values are computed by the
NumPy backend's lowerings, the reference semantics, as constant folding does.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .ir import Graph, Node, ParamSpec, Value

ARITHMETIC = {"mul", "add", "sub", "div", "neg", "rsqrt", "sqrt", "reciprocal", "square"}
LEAVES = {"param", "const"}
PASS_THROUGH = {"rename"}
SLICES = {"unstack"}
FOLDED_DTYPES = {"f32", "f64"}  # half precision computes widened (compiler/dtypes.py): left to the runtime


def fold_parameters(graph: Graph, params: Mapping[str, np.ndarray], slices: bool = True) -> dict[str, np.ndarray]:
    """Replace each parameter-only arithmetic result that the rest of the graph reads with a new
    parameter holding its value; returns the parameters with the new ones added. The graph's
    other nodes and the original parameters are untouched (unread ones leave the file)."""
    derived: dict[int, bool] = {}  # value id -> whether arithmetic computed it
    folded_nodes: list[Node] = []
    computes = ARITHMETIC | (SLICES if slices else set())
    for node in graph.nodes:
        if not _foldable(node, derived, computes):
            continue
        did_arithmetic = node.op in computes or any(derived[v.id] for v in node.inputs)
        for v in node.outputs:
            derived[v.id] = did_arithmetic
        folded_nodes.append(node)
    frontier: dict[int, Value] = {}
    for node in graph.nodes:
        if not all(v.id in derived for v in node.outputs):
            frontier.update({v.id: v for v in node.inputs if derived.get(v.id)})
    frontier.update({v.id: v for _, v in graph.outputs if derived.get(v.id)})
    if not frontier:
        return dict(params)

    from archlang.backends.numpy_codegen import Evaluator, lower_node  # the reference semantics
    env: dict = {}
    evaluator = Evaluator(graph, params, {})
    for node in folded_nodes:  # small vectors and one product per folded weight; a bare parameter is a view
        ins = [env[v.id] for v in node.inputs]
        if node.op == "unstack":  # views, not np.take's copies: the writer copies each slice as it writes it
            p = node.inputs[0].type.position(node.attrs["axis"])
            outs = [ins[0][(slice(None),) * p + (i,)] for i in range(node.attrs["count"])]
        else:
            outs = lower_node(evaluator, node, ins)
        for v, o in zip(node.outputs, outs):
            env[v.id] = np.asarray(o)

    out = dict(params)
    mapping: dict[int, Value] = {}
    new_nodes: dict[int, list[Node]] = {}
    for vid, v in frontier.items():
        name = _fresh_name(graph, _base_name(v))
        graph.params[name] = ParamSpec(name, v.type, ("zeros", (), {}), v.producer.span, name)
        out[name] = env[vid]
        new = graph.new_value(v.type, v.hint)
        new.producer = Node("param", [], {"name": name, "type": v.type}, [new], v.producer.span, v.producer.scope)
        new_nodes.setdefault(id(v.producer), []).append(new.producer)
        mapping[vid] = new
    graph.nodes = [n for old in graph.nodes for n in new_nodes.get(id(old), []) + [old]]
    graph.replace_uses(mapping)
    from .passes.eliminate_dead_nodes import eliminate_dead_nodes
    eliminate_dead_nodes(graph)  # the arithmetic, and the parameters only it read
    return out


def _foldable(node: Node, derived: dict[int, bool], computes: set[str]) -> bool:
    if node.op in LEAVES:
        ok = not node.inputs
    elif node.op in computes or node.op in PASS_THROUGH:
        ok = bool(node.inputs) and all(v.id in derived for v in node.inputs)
    else:
        return False
    return ok and all(v.type.dtype in FOLDED_DTYPES and all(a.size.is_static for a in v.type.axes)
                      for v in node.outputs)


def _base_name(v: Value) -> str:
    """The name of the largest parameter `v` is computed from (a folded conv weight is named
    after the conv's weight), plus `.folded`."""
    best, todo, seen = None, [v.producer], set()
    while todo:
        n = todo.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        if n.op == "param":
            size = int(np.prod([a.size.value for a in n.outputs[0].type.axes]))
            if best is None or size > best[0]:
                best = (size, n.attrs["name"])
        todo.extend(x.producer for x in n.inputs)
    return f"{best[1] if best else 'const'}.folded"


def _fresh_name(graph: Graph, name: str) -> str:
    base, i = name, 1
    while name in graph.params:
        i += 1
        name = f"{base}{i}"
    return name
