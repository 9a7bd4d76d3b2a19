"""The typed graph IR.

A `Graph` holds nodes in a topological order. Each node names its op (a record in the op
registry), its input values, attributes and typed output values, the source span it came
from, and the scope (block instance path) it was built in, so later stages can point at
the user's text and diagrams can fence blocks and collapse repeats.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    import networkx as nx

from archlang.grammar.ast import Span

from .axes import Size, TensorType


@dataclass(eq=False)
class Value:
    id: int
    type: TensorType
    producer: Optional["Node"] = None
    hint: str = ""  # the .arch name it was bound to, for readable printouts and code

    def __repr__(self) -> str:
        return f"%{self.id}"


@dataclass(frozen=True)
class Scope:
    """Where a node was built: the block instance path and, inside repeats, which copy."""
    path: tuple[str, ...] = ()
    block: tuple[str, ...] = ()  # block names along the path
    repeat: tuple[tuple[str, int, int], ...] = ()  # (repeat group name, index, count)
    unprefixed: tuple[int, ...] = ()  # depths of calls `as ""`: in the path, not in parameter names

    def child(self, instance: str, block: str, prefixed: bool = True) -> "Scope":
        depth = () if prefixed else (len(self.path),)
        return Scope(self.path + (instance,), self.block + (block,), self.repeat, self.unprefixed + depth)

    def in_repeat(self, group: str, index: int, count: int) -> "Scope":
        return Scope(self.path, self.block, self.repeat + ((group, index, count),), self.unprefixed)

    @property
    def prefix(self) -> tuple[str, ...]:
        """What the parameters declared here are named under: the path less unprefixed calls."""
        return tuple(p for d, p in enumerate(self.path) if d not in self.unprefixed)

    def __str__(self) -> str:
        return ".".join(self.path)


@dataclass(eq=False)
class Node:
    op: str
    inputs: list[Value]
    attrs: dict[str, Any]
    outputs: list[Value]
    span: Optional[Span]
    scope: Scope = field(default_factory=Scope)


@dataclass
class ParamSpec:
    """A learned tensor: its type, initializer, and the stored layout it is bound from."""
    name: str
    type: TensorType
    init: tuple[str, tuple, dict]  # (initializer name, positional args, keyword args)
    span: Optional[Span]
    source_name: str  # the name a weights file stores it under
    layout: Optional[tuple[tuple[str, ...], ...]] = None  # stored axes (groups are merged)


class Graph:
    def __init__(self, name: str, enclosing: Optional["Graph"] = None) -> None:
        """`enclosing`: the graph a body graph belongs to; they share value ids."""
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: list[tuple[str, Value]] = []
        self.outputs: list[tuple[str, Value]] = []
        self.params: dict[str, ParamSpec] = {}
        self.symbols: dict[str, tuple[str, int]] = {}  # symbolic size -> (input name, axis position)
        self.input_spans: dict[str, Span] = {}  # where each model input is declared
        self.warnings: list = []  # diagnostics of severity "warning" found while building
        self._next_id = enclosing._next_id if enclosing is not None else [0]

    def new_value(self, type: TensorType, hint: str = "") -> Value:
        self._next_id[0] += 1
        return Value(self._next_id[0], type, None, hint)

    def add_node(self, op: str, inputs: list[Value], attrs: dict[str, Any], out_types: list[TensorType],
                 span: Optional[Span], scope: Scope) -> Node:
        node = Node(op, list(inputs), dict(attrs), [], span, scope)
        for t in out_types:
            v = self.new_value(t)
            v.producer = node
            node.outputs.append(v)
        self.nodes.append(node)
        return node

    def add_input(self, name: str, type: TensorType) -> Value:
        v = self.new_value(type, name)
        self.inputs.append((name, v))
        return v

    # ---- graph algorithms (networkx, imported where used: it costs ~0.3 s, and compiles rarely need it) ----

    def to_networkx(self) -> "nx.DiGraph":
        """Nodes are Node objects; an edge u -> v means v consumes an output of u."""
        import networkx as nx
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for n in self.nodes:
            for v in n.inputs:
                if v.producer is not None:
                    g.add_edge(v.producer, n)
        return g

    def toposort(self) -> None:
        """Reorder nodes topologically, stable with respect to the current order."""
        import networkx as nx
        order = {n: i for i, n in enumerate(self.nodes)}
        self.nodes = list(nx.lexicographical_topological_sort(self.to_networkx(), key=lambda n: order[n]))

    def live_nodes(self) -> set[Node]:
        """Nodes that some graph output depends on."""
        import networkx as nx
        g = self.to_networkx()
        live: set[Node] = set()
        for _, v in self.outputs:
            if v.producer is not None:
                live.add(v.producer)
                live |= nx.ancestors(g, v.producer)
        return live

    def replace_uses(self, mapping: dict[int, Value]) -> None:
        """Every read of a value whose id is in `mapping` (by nodes or as an output) reads its
        replacement instead."""
        for n in self.nodes:
            if any(v.id in mapping for v in n.inputs):
                n.inputs = [mapping.get(v.id, v) for v in n.inputs]
        self.outputs = [(name, mapping.get(v.id, v)) for name, v in self.outputs]

    def users(self) -> dict[int, list[Node]]:
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v.id, []).append(n)
        return out


# ---- the stable text form ----------------------------------------------------

def format_attr(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 8:
            return f"array({value.tolist()}, {value.dtype})"
        return f"array(shape={list(value.shape)}, {value.dtype})"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(format_attr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, Size):
        return str(value)
    if isinstance(value, str):
        return value if value.replace("_", "").replace(".", "").isalnum() else repr(value)
    return str(value)


def format_type(t: TensorType) -> str:
    return t.describe()


def print_graph(graph: Graph) -> str:
    """Deterministic text: values numbered in order of definition, one node per line; a
    node holding a body graph (`scan`) prints it indented below."""
    names: dict[int, str] = {}

    def name(v: Value) -> str:
        if v.id not in names:
            names[v.id] = f"%{len(names)}"
        return names[v.id]

    lines = [f"graph {graph.name} {{"]
    for n, v in graph.inputs:
        lines.append(f"  input {name(v)}: {format_type(v.type)}  # {n}")
    for pname, spec in graph.params.items():
        src = f" from {spec.source_name!r}" if spec.source_name != pname else ""
        if spec.layout is not None:
            src += " as [" + ", ".join("1" if not g else g[0] if len(g) == 1 else "(" + ", ".join(g) + ")"
                                       for g in spec.layout) + "]"
        init_args = [format_attr(a) for a in spec.init[1]] + [f"{k}={format_attr(v)}" for k, v in sorted(spec.init[2].items())]
        init = spec.init[0] + (f"({', '.join(init_args)})" if init_args else "")
        lines.append(f"  param {pname}: {format_type(spec.type)} = {init}{src}")
    _print_nodes(graph, name, lines, "  ")
    for n, v in graph.outputs:
        lines.append(f"  output {n} = {name(v)}: {format_type(v.type)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _print_nodes(graph: Graph, name, lines: list[str], indent: str) -> None:
    last_scope: Optional[str] = None
    for n in graph.nodes:
        scope = str(n.scope)
        if scope != last_scope and scope:
            rep = "".join(f"  [{g} {i + 1}/{c}]" for g, i, c in n.scope.repeat)
            lines.append(f"{indent}// {scope}: {'/'.join(n.scope.block)}{rep}")
        last_scope = scope
        outs = ", ".join(name(v) for v in n.outputs)
        args = ", ".join(name(v) for v in n.inputs)
        body = n.attrs.get("body")
        attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in sorted(n.attrs.items()) if k != "body")
        call = f"{n.op}({args}{'; ' if args and attrs else ''}{attrs})"
        types = ", ".join(format_type(v.type) for v in n.outputs)
        loc = f"  @{Path(n.span.file).name}:{n.span.line}:{n.span.column}" if n.span else ""
        lines.append(f"{indent}{outs} = {call} : {types}{loc}")
        if isinstance(body, Graph):
            ins = ", ".join(f"{name(v)}: {format_type(v.type)}" for _, v in body.inputs)
            lines.append(f"{indent}  body {body.name}({ins}) {{")
            _print_nodes(body, name, lines, indent + "    ")
            lines.append(f"{indent}    yield {', '.join(name(v) for _, v in body.outputs)}")
            lines.append(f"{indent}  }}")
