"""The IR verifier: every value defined before it is read, every node's output types what
its op's type rule says they are. Run after every pass; a failure is a bug in a pass."""
from __future__ import annotations

from typing import Optional

from .. import ops
from ..diagnostics import CompileError
from ..ir import Graph
from .manager import PassBug


def verify(graph: Graph, memo: Optional[dict] = None) -> None:
    """`memo` remembers nodes already verified with these very operand and result types (by
    identity): a deep model is verified after every pass, and most nodes did not change."""
    memo = {} if memo is None else memo
    defined = {v.id for _, v in graph.inputs}
    for node in graph.nodes:
        for v in node.inputs:
            if v.id not in defined:
                raise PassBug(f"`{node.op}` reads %{v.id}, which is not defined before it")
        signature = tuple(map(id, node.inputs)) + tuple(id(v.type) for v in node.inputs + node.outputs)
        if memo.get(id(node), (None, None))[1] != signature:
            try:
                expected = ops.get(node.op).infer([v.type for v in node.inputs], node.attrs, node.span)
            except CompileError as e:
                raise PassBug(f"`{node.op}` no longer type-checks: {e.diagnostics[0].message}") from None
            got = [v.type for v in node.outputs]
            if expected != got:
                raise PassBug(f"`{node.op}` outputs {', '.join(t.describe() for t in got)} but its type rule "
                              f"gives {', '.join(t.describe() for t in expected)}")
            memo[id(node)] = (node, signature)  # the node itself keeps its id from being reused
        for v in node.outputs:
            if v.producer is not node:
                raise PassBug(f"%{v.id} is an output of `{node.op}` but records another producer")
            defined.add(v.id)
        body = node.attrs.get("body")
        if isinstance(body, Graph):
            verify(body, memo)
    for name, v in graph.outputs:
        if v.id not in defined:
            raise PassBug(f"output `{name}` is %{v.id}, which no node defines")
