"""`archc summary`: a table per block of parameters, multiply-accumulates and output types,
like torchinfo, read off the typed IR.

Each row is a block instance (a prefix of the nodes' `Scope.path`) down to a depth. A
block's parameters are the learned tensors whose hierarchical names start with its path;
its multiply-accumulates are the sum of its nodes' `macs` (the op registry's cost rule:
contractions only, as torch's FlopCounterMode counts them); its outputs are the values it
makes that something outside it reads. Costs are polynomials in the symbolic sizes
(`batch`, `seq`) until `--set` fixes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from math import prod
from typing import Optional

import numpy as np

from .axes import DTYPES, Size, TensorType
from .ir import Graph, Node
from .ops.registry import get


@dataclass
class BlockRow:
    path: tuple[str, ...]       # the instance path; () is the whole model
    block: str                  # the block's name (the model's, for the top row)
    params: int = 0
    macs: Size = field(default_factory=lambda: Size.of(0))
    outputs: list[TensorType] = field(default_factory=list)

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass
class ModelSummary:
    model: str
    rows: list[BlockRow]        # rows[0] is the whole model
    param_bytes: int
    inputs: list[tuple[str, TensorType]]

    @property
    def total(self) -> BlockRow:
        return self.rows[0]


def node_macs(node: Node) -> Size:
    return get(node.op).macs(node)


def _param_bytes(t: TensorType) -> int:
    itemsize = 2 if t.dtype == "bf16" else np.dtype(DTYPES[t.dtype]).itemsize
    return _elements(t) * itemsize


def _elements(t: TensorType) -> int:
    # Parameters have static sizes (the builder refuses symbolic ones).
    return prod(a.size.value for a in t.axes)


def summarize(graph: Graph, depth: int = 2) -> ModelSummary:
    """One row for the model and one per block instance opened down to `depth` levels."""
    rows: dict[tuple[str, ...], BlockRow] = {(): BlockRow((), graph.name)}
    owner: dict[int, tuple[str, ...]] = {}  # value id -> the row path of the node making it
    for node in graph.nodes:
        path = node.scope.path[:depth]
        for i in range(1, len(path) + 1):
            if path[:i] not in rows:
                rows[path[:i]] = BlockRow(path[:i], node.scope.block[i - 1])
        cost = node_macs(node)
        for i in range(len(path) + 1):
            rows[path[:i]].macs = rows[path[:i]].macs + cost
        for v in node.outputs:
            owner[v.id] = path
    _outputs_leaving(graph, rows, owner)
    # A parameter belongs to the block that declares it: where its first `param` node was built
    # (names cannot tell, since a call `as ""` adds no prefix to them).
    counted: set[str] = set()
    for node in graph.nodes:
        name = node.attrs.get("name") if node.op == "param" else None
        if name in graph.params and name not in counted:
            counted.add(name)
            path = node.scope.path[:depth]
            for i in range(len(path) + 1):
                rows[path[:i]].params += _elements(graph.params[name].type)
    rows[()].params += sum(_elements(s.type) for n, s in graph.params.items() if n not in counted)
    return ModelSummary(graph.name, list(rows.values()), sum(_param_bytes(s.type) for s in graph.params.values()),
                        list((name, v.type) for name, v in graph.inputs))


def _outputs_leaving(graph: Graph, rows: dict[tuple[str, ...], BlockRow], owner: dict[int, tuple[str, ...]]) -> None:
    """A row's outputs: values made inside it and read outside it (or returned by the model)."""
    seen: dict[tuple[str, ...], set[int]] = {p: set() for p in rows}
    values = {v.id: v for node in graph.nodes for v in node.outputs}

    def leaves(vid: int, reader: Optional[Node]) -> None:
        made = owner.get(vid)
        if made is None:
            return
        where = reader.scope.path if reader is not None else None
        # A block's result is renamed back to the caller's wires by a `rename` outside it:
        # show the type the caller sees.
        back = (reader is not None and reader.op == "rename" and len(reader.scope.path) < len(made)
                and made[:len(reader.scope.path)] == reader.scope.path)
        shown = reader.outputs[0].type if back else values[vid].type
        for i in range(1, len(made) + 1):
            inside = made[:i]
            if (where is None or where[:i] != inside) and vid not in seen[inside]:
                seen[inside].add(vid)
                rows[inside].outputs.append(shown)

    for node in graph.nodes:
        for v in node.inputs:
            leaves(v.id, node)
    for _, v in graph.outputs:
        leaves(v.id, None)
    rows[()].outputs = [v.type for _, v in graph.outputs]


def evaluate(size: Size, values: dict[str, int]) -> Optional[int]:
    """The size's integer value at these symbol values, or None while a symbol is open."""
    total = Fraction(0)
    for monomial, coefficient in size.terms:
        if any(s not in values for s in monomial):
            return None
        total += coefficient * prod(values[s] for s in monomial)
    return int(total)


def human(n: float) -> str:
    """12_345_678 -> '12.35M' (torchinfo's style: three significant figures and a suffix)."""
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:g}"


def human_size(size: Size) -> str:
    """A cost polynomial with readable coefficients: '85.00M*batch*seq + 1.18M*batch*seq*seq'."""
    if size.is_static:
        return human(float(sum(c for _, c in size.terms)))
    parts = []
    for monomial, coefficient in sorted(size.terms, key=lambda t: (len(t[0]), t[0])):
        factors = ([human(float(coefficient))] if coefficient != 1 else []) + list(monomial)
        parts.append("*".join(factors) or "1")
    return " + ".join(parts)


def format_summary(summary: ModelSummary, sizes: Optional[dict[str, int]] = None, width: int = 40) -> str:
    """The table `archc summary` prints. `sizes` gives symbolic sizes values for the totals;
    costs with a symbol left open print as polynomials."""
    sizes = sizes or {}

    def cost(size: Size) -> str:
        value = evaluate(size, sizes)
        return human_size(size) if value is None else f"{value:,}"

    def output(row: BlockRow) -> str:
        text = ", ".join(str(t) for t in row.outputs[:2]) + (", ..." if len(row.outputs) > 2 else "")
        return text if len(text) <= width else text[:width - 3] + "..."

    table = [("block", "output", "params", "MACs")]
    for row in summary.rows:
        indent = "  " * (len(row.path) - 1) + ("" if not row.path else "")
        label = summary.model if not row.path else f"{indent}{row.path[-1]}" + (f": {row.block}" if row.block else "")
        table.append((label, output(row), f"{row.params:,}", cost(row.macs)))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = []
    for i, r in enumerate(table):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}".rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    total = summary.total
    lines += ["",
              f"parameters: {total.params:,} ({summary.param_bytes / 1e6:.2f} MB)",
              f"multiply-accumulates per inference: {cost(total.macs)}"
              + (f" ({human(evaluate(total.macs, sizes))})" if evaluate(total.macs, sizes) else ""),
              "inputs: " + ", ".join(f"{name}: {t}" for name, t in summary.inputs)]
    open_symbols = sorted(total.macs.symbols - set(sizes))
    if open_symbols:
        lines.append(f"(costs are per {', '.join(open_symbols)}: give sizes with "
                     + " ".join(f"--set {s}=N" for s in open_symbols) + ")")
    return "\n".join(lines) + "\n"
