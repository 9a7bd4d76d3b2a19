"""What rules did: the record behind `archc ... --explain`.

Every candidate a rule looked at (a node whose op is the root of its pattern) ends as
fired, or rejected with the reason the pattern or the rule's check gave. The report groups
identical outcomes at one source position, so twelve unrolled layers read as one line with
their instance paths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..ir import Node


@dataclass
class Event:
    rule: str
    node: Node
    fired: bool
    reason: Optional[str] = None


@dataclass
class Tracer:
    enabled: bool = False
    events: list[Event] = field(default_factory=list)

    def record(self, rule: str, node: Node, fired: bool, reason: Optional[str] = None) -> None:
        if self.enabled:
            self.events.append(Event(rule, node, fired, reason))

    def report(self) -> str:
        groups: dict[tuple, list[str]] = {}
        for e in self.events:
            span = e.node.span
            where = f"{Path(span.file).name}:{span.line}:{span.column}" if span else "(generated)"
            key = (e.fired, e.rule, where, e.reason)
            groups.setdefault(key, []).append(str(e.node.scope) or "(model)")
        lines = []
        for (fired, rule, where, reason), scopes in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1:3])):
            what = "fired   " if fired else "rejected"
            lines.append(f"{what} {rule} at {where} in {_scopes(scopes)}" + ("" if fired else f": {reason}"))
        if not lines:
            lines.append("no rule found a candidate")
        return "\n".join(lines) + "\n"


def _scopes(scopes: list[str]) -> str:
    unique = list(dict.fromkeys(scopes))
    if len(unique) <= 2:
        return ", ".join(unique)
    return f"{unique[0]} … {unique[-1]} ({len(scopes)} places)"
