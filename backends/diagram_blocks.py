"""The axes a closed block broadcasts over: the band along its box's bottom edge, as an op's.

An axis of the block's wires (named as the caller names them) passes through the block when
no op inside acts on it (diagram_axes.acted_axes) under any of the names the block gives it:
the names the renames inside the block, and at its entry and exit, join into classes, and a
class passes only if none of its names is acted on. So a transformer's MLP passes `batch,
seq`, its attention only `batch` (inside, `seq` is renamed `key` and softmax acts on `key`);
a U-Net's conv block passes `batch`. A scan acts on the axis it steps along.
"""
from __future__ import annotations

from archlang.compiler.ir import Node, Value

from .diagram_axes import PASS_THROUGH, acted_axes, axis_names


class _Names:
    """Union-find over axis names."""

    def __init__(self) -> None:
        self.up: dict[str, str] = {}

    def find(self, a: str) -> str:
        while self.up.get(a, a) != a:
            a = self.up[a]
        return a

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.up[max(ra, rb)] = min(ra, rb)


def block_passes(b, ins: dict[str, list[Value]], outs: dict[str, list[Value]]) -> dict[str, str]:
    """Closed block box -> the axes it broadcasts over ("" for none). `b` is the diagram
    builder; `ins` / `outs` the values on each closed block's wires, in the caller's names."""
    names: dict[str, _Names] = {}
    acted: dict[str, set] = {}
    for n in b.nodes:
        if n.op in ("param", "const"):
            continue
        box = b.closed_box(b.sc(n))
        if n.op == "rename":
            src = n.inputs[0].producer
            for owner in {box, b.closed_box(b.sc(src)) if src is not None else None} - {None}:
                for old, new in n.attrs.get("mapping", ()):
                    names.setdefault(owner, _Names()).join(old, new)
            continue
        if n.op in PASS_THROUGH:
            continue
        if n.op == "scan" and "body" in n.attrs:
            inner = n.attrs["body"].nodes
            for owner in {box, b.closed_box(b.sc(inner[0])) if inner else None} - {None}:
                acted.setdefault(owner, set()).update(axis_names(n.attrs.get("axis")))
            continue
        if box is None:
            continue
        data = [v for v in n.inputs if v.type.axes and b.source(v)[0] not in ("param", "const")]
        removed, added, over = acted_axes(n, data)
        acted.setdefault(box, set()).update(removed + added + over)
    out: dict[str, str] = {}
    for box in set(ins) & set(outs):
        classes = names.get(box, _Names())
        hit = {classes.find(a) for a in acted.get(box, ())}
        have = lambda v: {a.name for a in v.type.axes}
        common = set.intersection(*(have(v) for v in ins[box] + outs[box]))
        out[box] = ", ".join(a.name for a in outs[box][0].type.axes
                             if a.name in common and classes.find(a.name) not in hit)
    return out
