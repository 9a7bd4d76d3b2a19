"""The IR verifier: every value defined before it is read, every node's output types what
its op's type rule says they are. Run after every pass; a failure is a bug in a pass."""
from __future__ import annotations

from .. import ops
from ..diagnostics import CompileError
from ..ir import Graph
from .manager import PassBug


def verify(graph: Graph) -> None:
    defined = {v.id for _, v in graph.inputs}
    for node in graph.nodes:
        for v in node.inputs:
            if v.id not in defined:
                raise PassBug(f"`{node.op}` reads %{v.id}, which is not defined before it")
        try:
            expected = ops.get(node.op).infer([v.type for v in node.inputs], node.attrs, node.span)
        except CompileError as e:
            raise PassBug(f"`{node.op}` no longer type-checks: {e.diagnostics[0].message}") from None
        got = [v.type for v in node.outputs]
        if expected != got:
            raise PassBug(f"`{node.op}` outputs {', '.join(t.describe() for t in got)} but its type rule "
                          f"gives {', '.join(t.describe() for t in expected)}")
        for v in node.outputs:
            if v.producer is not node:
                raise PassBug(f"%{v.id} is an output of `{node.op}` but records another producer")
            defined.add(v.id)
        body = node.attrs.get("body")
        if isinstance(body, Graph):
            verify(body)
    for name, v in graph.outputs:
        if v.id not in defined:
            raise PassBug(f"output `{name}` is %{v.id}, which no node defines")
