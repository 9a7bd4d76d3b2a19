"""A `scan`'s body in a diagram: a block level of its own inside the model.

The body is a graph of its own, held by the scan node. For the diagram its nodes join the
model's, right after their scan, each given a scope inside the scan's: the scan's path and a
level named for the scan (`scan seq`, `scan reverse seq`, `#2` added when a name repeats
at one place), the block it applies as that level's block, then the body's own levels below
the block instance it calls. The scan's inputs stand for the body's inputs and the body's
results for the scan's; `Group.loop` says what the loop does (`for each seq ↻ h`: the axis
it steps along, the state it carries from step to step).
"""
from __future__ import annotations

from archlang.compiler.ir import Node, Scope, Value

from .diagram_axes import axis_names


class ScanBodies:
    """`nodes`: the model's nodes in graph order, each scan followed by its body's (the scan
    is kept, never drawn); the maps below tie the body to the model."""

    def __init__(self, nodes: list[Node]) -> None:
        self.scope_of: dict[int, Scope] = {}  # a body's node -> its scope in the model
        self.body_in: dict[int, Value] = {}  # a body's input -> the scan's input feeding it
        self.body_out: dict[int, Value] = {}  # a scan's result -> the body's result it is
        self.loops: dict[tuple[str, ...], str] = {}  # a body's path -> its Group.loop
        self.nodes = self.flatten(nodes)

    def flatten(self, nodes: list[Node]) -> list[Node]:
        out, used = [], set()
        for n in nodes:
            out.append(n)
            body = n.attrs.get("body") if n.op == "scan" else None
            if body is None or any(id(m) in self.scope_of for m in body.nodes):
                continue  # a body shared by two scans is drawn once, as the scan's box
            sc = self.scope_of.get(id(n), n.scope)
            axis = "".join(axis_names(n.attrs.get("axis")))
            elem = "scan" + (" reverse" if n.attrs.get("reverse") else "") + " " + axis
            k = 2
            while (sc.path, elem) in used:
                elem, k = f"{elem.split(' #')[0]} #{k}", k + 1
            used.add((sc.path, elem))
            carried = [name for name, _ in body.outputs[:int(n.attrs.get("carried", 0))]]
            self.loops[sc.path + (elem,)] = f"for each {axis}" + (", last first" if n.attrs.get("reverse") else "") + \
                (f" ↻ {', '.join(carried)}" if carried else "")
            heads = {m.scope.path[:1] for m in body.nodes}
            strip = 1 if len(heads) == 1 and heads != {()} else 0  # the block instance the scan calls
            for m in body.nodes:
                self.scope_of[id(m)] = Scope(sc.path + (elem,) + m.scope.path[strip:],
                                             sc.block + (str(n.attrs.get("block", "scan")),) + m.scope.block[strip:],
                                             sc.repeat + m.scope.repeat)
            for (_, bv), ov in zip(body.inputs, n.inputs):
                self.body_in[id(bv)] = ov
            for (_, bv), ov in zip(body.outputs, n.outputs):
                self.body_out[id(ov)] = bv
            out += self.flatten(body.nodes)
        return out
