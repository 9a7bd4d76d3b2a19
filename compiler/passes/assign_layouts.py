"""Layout assignment: named axes leave each tensor's physical order free, so choose orders
that spare the backends their Transposes.

An op's type rule derives its result's order from its operands' (elementwise ops keep the
first operand's order, a contraction puts the left operand's kept axes first), so one
awkward order early in a model (ViT's patch embedding yields [embed, batch, tokens]) is
inherited by every layer, and every layer norm and dense layer transposes it back and forth.

Cases:
1. a value whose layout-sensitive readers all want the same axes last (a layer norm or
   softmax over them, a contraction with a parameter over them, attention's depth axes in
   its queries and keys) but does not have them
   last: one `transpose` right after its producer, and everything downstream re-derives
   its order from it; when the producer is `a + b` (or another commutative op) and `b + a`
   has the wanted order, the operands are swapped instead, for free;
2. readers that disagree, or none that care: the value is left alone;
3. renames are seen through (`LayerNorm[embed]` reads `x` renamed to its own `d`);
4. the graph's outputs keep the order the source declares (a final transpose if needed).
A graph holding a scan is left alone: the step's inputs were typed in its operands' orders.
"""
from __future__ import annotations

from typing import Optional

from .. import ops
from ..ir import Graph, Node, Value
from .manager import PassContext, PassResult
from .rewrite import COMMUTATIVE

MAX_TRANSPOSES = 64  # per graph: each one retypes everything after it
FIXED = {"param", "const", "array", "transpose"}


def _wanted_last(user: Node, v: Value) -> Optional[tuple[str, ...]]:
    """The axes `user` wants last in `v`, or None if its lowering does not care."""
    op, axes = user.op, tuple(user.attrs.get("axes", ()))
    if op in ("layernorm", "rmsnorm", "softmax", "log_softmax") and user.inputs[0] is v:
        return axes
    if op in ("add_layernorm", "add_rmsnorm") and v in user.inputs[:2]:  # the residual sum's operands
        return axes
    if op in ("contract", "linear", "gated_linear") and user.inputs[0] is v and user.inputs[1].producer is not None \
            and user.inputs[1].producer.op == "param":
        return axes
    if op == "attention" and v in user.inputs[:2]:  # queries and keys: depth last, as one [.., D] view
        return tuple(user.attrs["depth"])
    return None


def _wants(v: Value, users: dict[int, list[Node]], depth: int = 0) -> set[tuple[str, ...]]:
    wants: set[tuple[str, ...]] = set()
    for user in users.get(v.id, []):
        if user.op == "rename" and depth < 8:
            back = {new: old for old, new in user.attrs["mapping"]}
            for w in _wants(user.outputs[0], users, depth + 1):
                wants.add(tuple(back.get(a, a) for a in w))
            continue
        w = _wanted_last(user, v)
        if w is not None:
            wants.add(w)
    return wants


def _retype(graph: Graph, start: int) -> None:
    """Re-derive the output types of nodes from `start` on, from their operands' new orders.
    A `merge` needs its axes side by side: where the new order parts them, a transpose
    brings them together again (as the builder does for a merge written that way)."""
    i = start
    while i < len(graph.nodes):
        node = graph.nodes[i]
        if node.op == "merge" and not _adjacent(node.inputs[0].type.names, node.attrs["axes"]):
            graph.nodes.insert(i, _bring_together(graph, node))
            i += 1
        types = ops.get(node.op).infer([x.type for x in node.inputs], node.attrs, node.span)
        for out, t in zip(node.outputs, types):
            out.type = t
        i += 1


def _adjacent(names: tuple[str, ...], axes: tuple[str, ...]) -> bool:
    p = names.index(axes[0])
    return names[p:p + len(axes)] == tuple(axes)


def _bring_together(graph: Graph, merge: Node) -> Node:
    """A transpose putting `merge`'s axes together, in order, where the first of them is."""
    x = merge.inputs[0]
    axes = tuple(merge.attrs["axes"])
    first = min(x.type.position(a) for a in axes)
    rest = [a for a in x.type.names if a not in axes]
    order = tuple(rest[:first]) + axes + tuple(rest[first:])
    t = Node("transpose", [x], {"order": order}, [], merge.span, merge.scope)
    out = graph.new_value(x.type.with_axes(x.type.axis(a) for a in order), x.hint)
    out.producer = t
    t.outputs.append(out)
    merge.inputs = [out] + merge.inputs[1:]
    return t


def _swap_operands(graph: Graph, node: Node, index: int, last: tuple[str, ...]) -> bool:
    """`a + b` takes `a`'s order: when `b + a` puts `last` last, swapping costs nothing."""
    if node.op not in COMMUTATIVE or len(node.inputs) != 2 or len(node.outputs) != 1:
        return False
    swapped = ops.get(node.op).infer([x.type for x in node.inputs[::-1]], node.attrs, node.span)[0]
    if swapped.names[len(swapped.names) - len(last):] != last:
        return False
    node.inputs = node.inputs[::-1]
    _retype(graph, index)
    return True


def assign_layouts(graph: Graph) -> int:
    if any(isinstance(n.attrs.get("body"), Graph) for n in graph.nodes):
        return 0  # a scan's step was typed against its operands' orders: leave them be
    declared = [(name, v, v.type) for name, v in graph.outputs]
    inserted = 0
    i = 0
    users = graph.users()
    while i < len(graph.nodes) and inserted < MAX_TRANSPOSES:
        node = graph.nodes[i]
        i += 1
        if node.op in FIXED:
            continue
        for v in node.outputs:
            wants = _wants(v, users)
            if len(wants) != 1:
                continue
            last = wants.pop()
            names = v.type.names
            if not set(last) <= set(names) or names[len(names) - len(last):] == last:
                continue
            if _swap_operands(graph, node, i - 1, last):
                inserted += 1
                continue
            order = tuple(a for a in names if a not in last) + last
            t = Node("transpose", [v], {"order": order}, [], node.span, node.scope)
            out = graph.new_value(v.type.with_axes(v.type.axis(a) for a in order), v.hint)
            out.producer = t
            t.outputs.append(out)
            for user in users.get(v.id, []):
                user.inputs = [out if x is v else x for x in user.inputs]
            graph.outputs = [(n, out if x is v else x) for n, x in graph.outputs]
            users[out.id] = users.pop(v.id, [])
            users[v.id] = [t]
            graph.nodes.insert(i, t)
            _retype(graph, i + 1)
            inserted += 1
    # The outputs keep the order the source declared.
    for k, (name, v, declared_type) in enumerate(declared):
        current = dict(graph.outputs)[name]
        if current.type != declared_type:
            t = Node("transpose", [current], {"order": declared_type.names}, [], None, current.producer.scope
                     if current.producer else graph.nodes[-1].scope)
            out = graph.new_value(declared_type, current.hint)
            out.producer = t
            t.outputs.append(out)
            graph.nodes.append(t)
            graph.outputs = [(n, out if n == name else x) for n, x in graph.outputs]
    return inserted


class AssignLayouts:
    name = "assign-layouts"
    summary = "choose axis orders that spare Transposes (the axes an op acts on last)"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        before = len(graph.nodes)
        inserted = assign_layouts(graph)
        return PassResult(inserted > 0 or len(graph.nodes) != before,
                          {"layout transposes": inserted} if inserted else {})
