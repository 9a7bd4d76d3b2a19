"""The pass manager: passes run in order on a Graph, each verified after it runs.

A pass is an object with a `name` and `run(graph, ctx) -> PassResult`; it edits the graph in
place. After every pass `verify` re-infers each node's types through the op registry, so a
pass that leaves a mistyped or dangling graph is reported as a compiler bug naming the pass
and the passes before it, never lowered into a wrong model. Passes recurse into body graphs
(`scan`) themselves through `each_graph`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol

from ..ir import Graph
from .trace import Tracer


@dataclass
class PassResult:
    changed: bool
    counts: dict[str, int] = field(default_factory=dict)  # what the pass did, by rule or kind


@dataclass
class PassContext:
    """What passes may consult besides the graph: the rule tracer for `--explain`, and the
    options that pick lowerings (`target`: "ort" allows onnxruntime-only ops, "portable" not)."""
    tracer: Tracer = field(default_factory=Tracer)
    target: str = "ort"
    opset: int = 23


class Pass(Protocol):
    name: str
    summary: str

    def run(self, graph: Graph, ctx: PassContext) -> PassResult: ...


class PassBug(Exception):
    """A pass produced an invalid graph: a bug in archc, reported with the pass's name."""


@dataclass
class Report:
    """What ran, in order, with each pass's counts (summed over fixpoint rounds)."""
    ran: list[tuple[str, PassResult]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for _, r in self.ran:
            for k, v in r.counts.items():
                total[k] = total.get(k, 0) + v
        return total


def each_graph(graph: Graph) -> Iterator[Graph]:
    """The graph and every body graph nested in it (scan steps), innermost last."""
    yield graph
    for node in graph.nodes:
        body = node.attrs.get("body")
        if isinstance(body, Graph):
            yield from each_graph(body)


def run_passes(graph: Graph, passes: list[Pass], ctx: Optional[PassContext] = None,
               after: Optional[Callable[[str, Graph], None]] = None, rounds: int = 4) -> Report:
    """Run `passes` in order, repeating the whole list until a round changes nothing (at most
    `rounds` rounds); `after(name, graph)` is called after each pass that changed something."""
    from .verify import verify
    ctx = ctx or PassContext()
    report = Report()
    done: list[str] = []
    memo: dict = {}
    for _ in range(rounds):
        changed = False
        for p in passes:
            result = p.run(graph, ctx)
            done.append(p.name)
            try:
                if result.changed or not memo:  # a pass that changed nothing left the verified IR as it was
                    verify(graph, memo)
            except PassBug as e:
                raise PassBug(f"after pass `{p.name}` (run after {', '.join(done[:-1]) or 'nothing'}): {e}") from None
            report.ran.append((p.name, result))
            if result.changed:
                changed = True
                if after is not None:
                    after(p.name, graph)
        if not changed:
            break
    return report
