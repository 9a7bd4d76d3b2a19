"""The rewrite-rule engine.

A rule is data: a `pattern` over registry ops (`Op`, `Var`, `Const`, `Either`, `AddChain`),
a `check` that returns the reason it declines (None to accept), and a `rewrite` that builds
the replacement through a `RewriteBuilder` (which types every new node through the op
registry, as the builder does). `apply_rules` walks the graph in order; where a rule fires,
the replacement is inserted before the matched root, the root's uses move to it, and the
matched nodes are left for dead-code elimination.

A match never swallows a value that is used outside it: an interior node whose result
something else reads would have to be computed anyway, so the engine declines and says so.
The exception is a rule whose replacement computes that value too (a fused op with two
results): it names such nodes in `shares_interior`, and its rewrite hands the engine the
new value for each of their results through `RewriteBuilder.share`, which the outside
users then read instead.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import ops
from ..axes import TensorType
from ..ir import Graph, Node, Value
from .manager import PassBug, PassContext, PassResult

COMMUTATIVE = {"add", "mul", "minimum", "maximum", "and", "or", "eq", "ne"}


class Match:
    """Bindings of a pattern's names to values (`Var`, `Const`) or nodes (`Op(name=...)`)."""

    def __init__(self, users: dict[int, list[Node]], outputs: frozenset = frozenset()):
        self.users = users
        self.outputs = outputs  # ids of the graph's outputs: read by the caller, so never interior
        self.bound: dict[str, Any] = {}
        self.nodes: list[Node] = []  # every node the pattern matched, root first
        self.why: Optional[str] = None
        self.depth = 0  # how many nodes the deepest failed attempt had matched

    def __getitem__(self, name: str) -> Any:
        return self.bound[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.bound.get(name, default)

    def const(self, name: str) -> float:
        """The scalar a `Const(name)` matched."""
        return float(self.bound[name].producer.attrs["value"])

    def fail(self, why: str) -> bool:
        """Record why the match failed; the deepest failure (the best partial match) wins."""
        if self.why is None or len(self.nodes) > self.depth:
            self.why, self.depth = why, len(self.nodes)
        return False

    def _save(self) -> tuple:
        return dict(self.bound), list(self.nodes)

    def _restore(self, saved: tuple) -> None:
        self.bound, self.nodes = dict(saved[0]), list(saved[1])


class Pattern(ABC):
    @abstractmethod
    def match(self, v: Value, m: Match) -> bool:
        """Bind `v` (and what computes it) into `m`, or record why not and return False."""


@dataclass
class Var(Pattern):
    """Any value; a name bound twice must be the same value."""
    name: str

    def match(self, v: Value, m: Match) -> bool:
        if self.name in m.bound and m.bound[self.name] is not v:
            return m.fail(f"`{self.name}` would be two different values")
        m.bound[self.name] = v
        return True


@dataclass
class Const(Pattern):
    """A scalar constant (a `const` node), bound as its value."""
    name: str

    def match(self, v: Value, m: Match) -> bool:
        if v.producer is None or v.producer.op != "const":
            return m.fail(f"`{self.name}` is not a constant")
        m.bound[self.name] = v
        return True


class Op(Pattern):
    """A value computed by op `op` from values matching `inputs`; commutative ops try both
    operand orders. `name` binds the node."""

    def __init__(self, op: str, *inputs: Pattern, name: Optional[str] = None):
        self.op, self.inputs, self.name = op, inputs, name

    def match(self, v: Value, m: Match) -> bool:
        node = v.producer
        if node is None or node.op != self.op:
            got = "an input" if node is None else f"`{node.op}`"
            return m.fail(f"expected `{self.op}`{f' ({self.name})' if self.name else ''}, found {got}")
        if self.inputs and len(node.inputs) != len(self.inputs):
            return m.fail(f"`{self.op}` has {len(node.inputs)} operands, the pattern {len(self.inputs)}")
        return self.match_node(node, m)

    def match_node(self, node: Node, m: Match) -> bool:
        orders = [list(node.inputs)]
        if self.op in COMMUTATIVE and len(node.inputs) == 2:
            orders.append(list(reversed(node.inputs)))
        saved = m._save()
        for values in orders:
            if self.name:
                m.bound[self.name] = node
            m.nodes.append(node)
            if all(p.match(x, m) for p, x in zip(self.inputs, values)):
                return True
            m._restore(saved)
        return False


class Either(Pattern):
    """The first alternative that matches."""

    def __init__(self, *alternatives: Pattern):
        self.alternatives = alternatives

    def match(self, v: Value, m: Match) -> bool:
        saved = m._save()
        for p in self.alternatives:
            if p.match(v, m):
                return True
            m._restore(saved)
        return False


class AddChain(Pattern):
    """`inner + t1 + t2 + ...` in any association and order, zero or more terms: binds the list
    of terms as `into` (the additive biases of attention scores, say)."""

    def __init__(self, inner: Pattern, into: str):
        self.inner, self.into = inner, into

    def match(self, v: Value, m: Match) -> bool:
        saved = m._save()
        if self.inner.match(v, m):
            m.bound.setdefault(self.into, [])
            return True
        m._restore(saved)
        node = v.producer
        if node is None or node.op != "add":
            return False
        for here, term in ((0, 1), (1, 0)):
            m.nodes.append(node)
            if self.match(node.inputs[here], m):
                m.bound[self.into] = m.bound[self.into] + [node.inputs[term]]
                return True
            m._restore(saved)
        return False


class Rule(ABC):
    """Subclasses set `name` and `pattern` (an `Op` at the root) and override `check` and
    `rewrite`. `explain_misses`: report rejected candidates under --explain (fusions do;
    one-line identities would only add noise)."""
    name = ""
    pattern: Op
    explain_misses = False
    # Names of matched interior nodes (`Op(name=...)`) whose results may be used outside the
    # match; `rewrite` must `b.share(old, new)` each of their results that is.
    shares_interior: tuple[str, ...] = ()

    def check(self, m: Match) -> Optional[str]:
        return None

    @abstractmethod
    def rewrite(self, m: Match, b: "RewriteBuilder") -> Union[Value, Sequence[Value]]:
        """The values that replace the root's outputs, built through `b`."""


@dataclass
class RewriteBuilder:
    """Emits the replacement's nodes, typed through the op registry, with the root's source
    span and scope (so diagrams and messages still point at the user's text)."""
    graph: Graph
    root: Node
    nodes: list[Node] = field(default_factory=list)
    shared: dict[int, Value] = field(default_factory=dict)  # interior value id -> its replacement

    def share(self, old: Value, new: Value) -> None:
        """`new` replaces `old`, the result of a `shares_interior` node, for its users outside the match."""
        self.shared[old.id] = new

    def emit(self, op: str, inputs: Sequence[Value], **attrs: Any) -> list[Value]:
        types = ops.get(op).infer([v.type for v in inputs], attrs, self.root.span)
        node = Node(op, list(inputs), dict(attrs), [], self.root.span, self.root.scope)
        for t in types:
            out = self.graph.new_value(t)
            out.producer = node
            node.outputs.append(out)
        self.nodes.append(node)
        return node.outputs

    def emit1(self, op: str, inputs: Sequence[Value], **attrs: Any) -> Value:
        return self.emit(op, inputs, **attrs)[0]

    def const(self, value: float, dtype: str) -> Value:
        return self.emit1("const", [], dtype=dtype, value=value)

    def transpose(self, v: Value, order: Sequence[str]) -> Value:
        if v.type.names == tuple(order):
            return v
        return self.emit1("transpose", [v], order=tuple(order))


def _interior_escapes(m: Match, root: Node, rule: Rule, position: dict[int, int]
                      ) -> tuple[Optional[str], list[Value]]:
    """Why the match swallows a value used outside it (None if it does not), and the results
    of the rule's `shares_interior` nodes that are used outside (the rewrite replaces them)."""
    inside = set(map(id, m.nodes))
    sharable = {id(m.bound[n]) for n in rule.shares_interior if isinstance(m.bound.get(n), Node)}
    shared: list[Value] = []
    for node in m.nodes:
        if node is root:
            continue
        for v in node.outputs:
            outside = [u for u in m.users.get(v.id, []) if id(u) not in inside]
            if (v.id in m.outputs or outside) and id(node) in sharable:
                if any(_reaches(root, u, position) for u in outside):
                    return f"the `{node.op}` result also feeds the pattern's other operands", []
                shared.append(v)
            elif v.id in m.outputs:
                return f"the `{node.op}` result is also an output of the graph", []
            elif outside:
                return f"the `{node.op}` result is also used outside the pattern", []
    return None, shared


def _reaches(root: Node, target: Node, position: dict[int, int]) -> bool:
    """`target` is an ancestor of `root` (redirecting it to a value `root`'s replacement
    computes would make a cycle). `position`: the nodes' places in the sweep's topological
    order; a node placed after `root` is no ancestor of it, which spares walking the graph."""
    if position.get(id(target), -1) > position.get(id(root), 1 << 62):
        return False
    seen, todo = set(), [root]
    while todo:
        n = todo.pop()
        for v in n.inputs:
            p = v.producer
            if p is target:
                return True
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                todo.append(p)
    return False


def _replace(graph: Graph, users: dict[int, list[Node]], old: Value, new: Value) -> None:
    for user in users.pop(old.id, []):
        user.inputs = [new if x is old else x for x in user.inputs]
        users.setdefault(new.id, []).append(user)
    graph.outputs = [(n, new if v is old else v) for n, v in graph.outputs]


def apply_rules(graph: Graph, rules: Sequence[Rule], ctx: PassContext, max_sweeps: int = 8) -> PassResult:
    """Fire `rules` wherever they match until a sweep fires none; counts by rule name."""
    from .eliminate_dead_nodes import eliminate_dead_nodes
    by_root: dict[str, list[Rule]] = {}
    for r in rules:
        by_root.setdefault(r.pattern.op, []).append(r)
    counts: dict[str, int] = {}
    for _ in range(max_sweeps):
        users = graph.users()
        position = {id(n): i for i, n in enumerate(graph.nodes)}
        consumed: set[int] = set()
        order: list[Node] = []
        fired = reorder = False
        for node in graph.nodes:
            if id(node) not in consumed:
                for rule in by_root.get(node.op, ()):
                    new = _try(graph, rule, node, users, ctx, position)
                    if new is not None:
                        order.extend(new[0])
                        consumed.update(map(id, new[1]))
                        reorder = reorder or new[2]
                        counts[rule.name] = counts.get(rule.name, 0) + 1
                        fired = True
                        break
            order.append(node)
        graph.nodes = order
        if reorder:  # a shared value's users may precede the replacement
            _toposort(graph)
        if not fired:
            break
        eliminate_dead_nodes(graph)
    return PassResult(bool(counts), counts)


def _toposort(graph: Graph) -> None:
    """Graph.toposort's order (topological, stable with respect to the current order: of the
    nodes ready, the earliest first) without importing networkx, which costs a compile ~0.3 s."""
    import heapq
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    waiting = {id(n): 0 for n in graph.nodes}
    readers: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for p in {id(v.producer): v.producer for v in n.inputs if v.producer is not None}.values():
            if id(p) in index:
                waiting[id(n)] += 1
                readers.setdefault(id(p), []).append(n)
    ready = [(index[id(n)], n) for n in graph.nodes if not waiting[id(n)]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for r in readers.get(id(n), ()):
            waiting[id(r)] -= 1
            if not waiting[id(r)]:
                heapq.heappush(ready, (index[id(r)], r))
    if len(order) != len(graph.nodes):
        raise PassBug("a rewrite made the graph cyclic")
    graph.nodes = order


def _try(graph: Graph, rule: Rule, node: Node, users: dict[int, list[Node]], ctx: PassContext,
         position: dict[int, int]):
    """The new nodes, the matched ones and whether shared values moved, when `rule` fires at
    `node`; else None."""
    m = Match(users, frozenset(v.id for _, v in graph.outputs))
    reason = None
    if not rule.pattern.match_node(node, m):
        reason = m.why or "the pattern does not match"
        partial = m.depth > 1  # more than the root matched: worth explaining
    else:
        reason, shared = _interior_escapes(m, node, rule, position)
        reason = reason or rule.check(m)
        partial = True
    if reason is not None:
        if rule.explain_misses and partial:
            ctx.tracer.record(rule.name, node, False, reason)
        return None
    b = RewriteBuilder(graph, node)
    result = rule.rewrite(m, b)
    results = [result] if isinstance(result, Value) else list(result)
    if len(results) != len(node.outputs):
        raise PassBug(f"rule `{rule.name}` replaced {len(node.outputs)} values with {len(results)}")
    missing = [v for v in shared if v.id not in b.shared]
    if missing:
        raise PassBug(f"rule `{rule.name}` gave no replacement for shared {missing[0].type.describe()}")
    olds = list(node.outputs) + shared
    finals = []
    for old, new in zip(olds, results + [b.shared[v.id] for v in shared]):
        if new.type != old.type:
            if new.type.dtype != old.type.dtype or not new.type.same_axes(old.type):
                raise PassBug(f"rule `{rule.name}` replaced {old.type.describe()} with {new.type.describe()}")
            new = b.transpose(new, old.type.names)  # same wires, another layout
        finals.append(new)
    for n in b.nodes:
        for x in n.inputs:
            users.setdefault(x.id, []).append(n)
    for old, new in zip(olds, finals):
        _replace(graph, users, old, new)
    ctx.tracer.record(rule.name, node, True)
    return b.nodes, m.nodes, bool(shared)


def scalar_value(v: Value) -> Optional[float]:
    """The number a `const` node holds, or None."""
    if v.producer is not None and v.producer.op == "const":
        return float(np.asarray(v.producer.attrs["value"]))
    return None


def same_type(a: TensorType, b: TensorType) -> bool:
    return a.dtype == b.dtype and a.same_axes(b)
