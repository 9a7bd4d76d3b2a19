"""The diagram model: what an architecture drawing shows, independent of its output format.

Built from the typed IR (`compiler.ir.Graph`):

- an op is a box named by its op; `param` nodes are not boxes: the op reading a learned
  parameter is marked (`Box.params`, drawn bold, its names and shapes as a tooltip);
- renames, transposes and constants are not boxes either: a wire runs from the producing op
  to the consuming one and is labelled with the axes it carries (`Wire.label` at the source,
  `Wire.dst_label` when a rename gave them other names on the way);
- a block instance (`Scope.path` / `Scope.block`) is a `Group` (a fenced region); one nested
  deeper than `depth` and not named by `expand` is closed: a single box for the whole block;
- copies 1..N-1 of a `repeat` collapse onto copy 0, which is marked `× N` (and shared when
  `repeat N shared` shares one set of weights).

Ids come from graph order, never from memory addresses, so the same graph gives the same
diagram. SVG, DOT and Mermaid writers all read this model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from archlang.compiler.diagnostics import CompileError, Diagnostic
from archlang.compiler.ir import Graph, Node, Scope, Value

PASS_THROUGH = {"rename", "transpose"}  # relabel or reorder axes: folded into wire labels


@dataclass
class Group:
    """An open block instance, drawn as a fenced region."""
    id: str
    parent: str  # "" for the model itself
    block: str
    path: str  # instance path, e.g. "h.0.attn"; "h.0 … h.11" for a collapsed repeat
    repeat: int = 1
    shared: bool = False

    @property
    def title(self) -> str:
        return f"{self.block} · {self.path}"

    @property
    def badge(self) -> str:
        """`× 12`, `× 12 shared`, or "" when not repeated."""
        if self.repeat <= 1:
            return ""
        return f"× {self.repeat}" + (" shared" if self.shared else "")


@dataclass
class Box:
    id: str
    kind: str  # "op" | "block" (a closed block) | "input" | "output"
    lines: list[str]  # the first is the name; more lines are notes
    group: str  # id of the enclosing Group, "" for the model
    params: list[str] = field(default_factory=list)  # "name: f32[a=1, b]" of the parameters it reads
    tooltip: str = ""

    @property
    def bold(self) -> bool:
        return bool(self.params)


@dataclass
class Wire:
    src: str
    src_port: int  # which output of the source box
    dst: str
    label: str  # the axes as the source produces them
    dst_label: str  # renames on the way, `embed→d` ("" when none)
    type: str  # the full type, for a tooltip


@dataclass
class Diagram:
    name: str
    boxes: list[Box]
    wires: list[Wire]
    groups: list[Group]
    sizes: bool = True


def axes_label(value: Value, sizes: bool) -> str:
    """`batch, seq, embed=768`: named axes, static sizes unless `sizes` is off."""
    parts = [a.name if not sizes or not a.size.is_static else f"{a.name}={a.size}" for a in value.type.axes]
    text = ", ".join(parts) if parts else "scalar"
    return text if value.type.dtype in ("f32",) else f"{value.type.dtype} {text}"


@dataclass
class _Level:
    key: str  # unique id of this block instance (path and repeat copy)
    block: str
    path: str
    repeat: int
    index: int
    shared: bool


def _repeat_depth(path: tuple[str, ...], group: str, index: int, start: int) -> Optional[tuple[int, bool]]:
    """At which path element a repeat group sits, and whether it is shared. The builder names
    copy i of `repeat N Block(x) as "h.{i}"` `h.i` (group `h`); a shared repeat keeps one name."""
    for d in range(start, len(path)):
        e = path[d]
        if e == group:
            return d, True
        s, k = str(index), e.find(str(index))
        while k >= 0:
            name = e[:k] + "{i}" + e[k + len(s):]
            if name.replace(".{i}", "").replace("{i}", "") == group:
                return d, False
            k = e.find(s, k + 1)
    return None


class _Builder:
    def __init__(self, graph: Graph, depth: int, expand: Iterable[str], sizes: bool, collapse: bool) -> None:
        self.graph, self.depth, self.sizes, self.collapse = graph, depth, sizes, collapse
        self.expand = set(expand)
        self.index = {id(n): i for i, n in enumerate(graph.nodes)}
        self.levels_cache: dict[Scope, list[_Level]] = {}
        self.source_cache: dict[int, tuple] = {}
        self.boxes: dict[str, Box] = {}
        self.groups: dict[str, Group] = {}
        self.wires: dict[tuple, Wire] = {}
        self.block_ports: dict[tuple[str, int, int], int] = {}  # (block box, node index, output) -> port
        self.port_count: dict[str, int] = {}

    # ---- scopes and repeats ----

    def levels(self, scope: Scope) -> list[_Level]:
        if scope in self.levels_cache:
            return self.levels_cache[scope]
        reps: dict[int, tuple[int, int, bool]] = {}
        start = 0
        for group, i, count in scope.repeat:
            found = _repeat_depth(scope.path, group, i, start)
            if found is not None:
                reps[found[0]] = (count, i, found[1])
                start = found[0] + 1
        out, copies = [], []
        for d, (elem, block) in enumerate(zip(scope.path, scope.block)):
            count, i, shared = reps.get(d, (1, 0, False))
            copies.append(str(i))
            path = ".".join(scope.path[:d + 1])
            if count > 1 and self.collapse and not shared:
                first, last = (".".join(scope.path[:d] + (elem.replace(str(i), str(k), 1),)) for k in (0, count - 1))
                path = f"{first} … {last}" if elem.count(str(i)) == 1 else path
            key = ".".join(scope.path[:d + 1]) + "#" + ",".join(copies)
            out.append(_Level(key, block, path, count if self.collapse else 1, i, shared))
        self.levels_cache[scope] = out
        return out

    def canonical(self) -> dict[int, Node]:
        """Each node of copy i > 0 of a repeat -> the same node of copy 0 (same op, source
        position and occurrence); nodes of copy 0 and outside repeats map to themselves."""
        seen: dict[tuple, int] = {}
        first: dict[tuple, Node] = {}
        out: dict[int, Node] = {}
        for n in self.graph.nodes:
            span = (n.span.file, n.span.line, n.span.column) if n.span else None
            base = (tuple((g, c) for g, _, c in n.scope.repeat), n.op, span)
            own = base + (tuple(i for _, i, _ in n.scope.repeat),)
            k = seen.get(own, 0)
            seen[own] = k + 1
            if all(i == 0 for _, i, _ in n.scope.repeat):
                first[base + (k,)] = n
            out[id(n)] = first.get(base + (k,), n) if self.collapse else n
        return out

    # ---- sources of values ----

    def source(self, v: Value) -> tuple:
        """What a value comes from, past renames and transposes: ("node", node, output),
        ("param", name, type), ("const", value), ("input", name) or ("none",)."""
        if v.id in self.source_cache:
            return self.source_cache[v.id]
        n, out = v.producer, None
        if n is None:
            names = [name for name, iv in self.graph.inputs if iv is v]
            out = ("input", names[0]) if names else ("none",)
        elif n.op in PASS_THROUGH:
            out = self.source(n.inputs[0])
        elif n.op == "param":
            out = ("param", n.attrs.get("name", "?"), v.type.describe())
        elif n.op == "const":
            out = ("const", n.attrs.get("value"))
        else:
            out = ("node", n, n.outputs.index(v))
        self.source_cache[v.id] = out
        return out

    # ---- boxes ----

    def unit(self, n: Node) -> tuple[str, bool]:
        """The box drawing node `n` (its own, or its closed block's) and whether it is a block."""
        levels = self.levels(n.scope)
        parent = ""
        for d, lv in enumerate(levels):
            if not (d < self.depth or lv.key in self.opened):
                bid = "b" + str(self.index[id(n)]) if lv.key not in self.block_ids else self.block_ids[lv.key]
                if lv.key not in self.block_ids:
                    self.block_ids[lv.key] = bid
                    note = lv.path + (f"  × {lv.repeat}" + (" shared" if lv.shared else "") if lv.repeat > 1 else "")
                    self.boxes[bid] = Box(bid, "block", [lv.block, note], parent, tooltip=f"block {lv.block} {lv.path}")
                return bid, True
            if lv.key not in self.groups:
                self.groups[lv.key] = Group(lv.key, parent, lv.block, lv.path, lv.repeat, lv.shared)
            parent = lv.key
        bid = "n" + str(self.index[id(n)])
        if bid not in self.boxes:
            label = n.op if n.op != "scan" else "scan" + (" reverse" if n.attrs.get("reverse") else "") + \
                f" {n.attrs.get('axis', '')}"
            lines = [label] + ([str(n.attrs["block"])] if n.op == "scan" and "block" in n.attrs else [])
            where = f"{n.span.file.split('/')[-1]}:{n.span.line}:{n.span.column}" if n.span else ""
            self.boxes[bid] = Box(bid, "op", lines, parent, tooltip=f"{n.op} {where}".strip())
        return bid, False

    def open_keys(self, nodes: list[Node]) -> set[str]:
        """Groups --expand opens, with their ancestors; an unknown name is an error."""
        opened, matched = set(), set()
        for n in nodes:
            levels = self.levels(n.scope)
            for d, lv in enumerate(levels):
                names = {lv.block, lv.path, lv.key.split("#")[0], lv.key.split("#")[0].split(".")[-1]}
                hit = self.expand & names
                if hit:
                    matched |= hit
                    opened.update(x.key for x in levels[:d + 1])
        missing = sorted(self.expand - matched)
        if missing:
            raise CompileError(Diagnostic(f"--expand {missing[0]}: no block or instance of that name in this model", None))
        return opened

    def build(self) -> Diagram:
        canon = self.canonical()
        drawn = [n for n in self.graph.nodes if canon[id(n)] is n and n.op not in PASS_THROUGH | {"param", "const"}]
        self.opened = self.open_keys(drawn)
        self.block_ids: dict[str, str] = {}
        for k, (name, v) in enumerate(self.graph.inputs):
            self.boxes[f"in{k}"] = Box(f"in{k}", "input", [name], "", tooltip=f"input {name}: {v.type.describe()}")
        units = {id(n): self.unit(n) for n in drawn}
        for n in drawn:
            self.connect(n, units, canon)
        for k, (name, v) in enumerate(self.graph.outputs):
            self.boxes[f"out{k}"] = Box(f"out{k}", "output", [name], "", tooltip=f"output {name}: {v.type.describe()}")
            self.wire(v, f"out{k}", units, canon, None)
        boxes = sorted(self.boxes.values(), key=_order)
        return Diagram(self.graph.name, boxes, list(self.wires.values()), list(self.groups.values()), self.sizes)

    def connect(self, n: Node, units: dict, canon: dict) -> None:
        dst, is_block = units[id(n)]
        box = self.boxes[dst]
        for v in n.inputs:
            src = self.source(v)
            if src[0] == "param":
                entry = f"{src[1]}: {src[2]}"
                if entry not in box.params:
                    box.params.append(entry)
            elif src[0] == "const":
                if not is_block and _scalar(src[1]) is not None and len(box.lines) < 3:
                    box.lines.append(_scalar(src[1]))
            else:
                self.wire(v, dst, units, canon, n)

    def wire(self, v: Value, dst: str, units: dict, canon: dict, reader: Optional[Node]) -> None:
        src = self.source(v)
        if src[0] == "input":
            k = [n for n, _ in self.graph.inputs].index(src[1])
            sid, port, produced = f"in{k}", 0, self.graph.inputs[k][1]
        elif src[0] == "node":
            m = src[1]
            if self.collapse and reader is not None and _cross_copy(m, reader):
                return  # a repeat's state handed from one copy to the next: the copy drawn is all copies
            m0 = canon[id(m)]
            if id(m0) not in units:
                return
            sid, is_block = units[id(m0)]
            produced = m0.outputs[src[2]]
            port = src[2]
            if sid == dst:
                return
            if is_block:
                k = (sid, self.index[id(m0)], src[2])
                if k not in self.block_ports:
                    self.block_ports[k] = self.port_count.get(sid, 0)
                    self.port_count[sid] = self.block_ports[k] + 1
                port = self.block_ports[k]
        else:
            return
        if sid == dst:
            return
        key = (sid, port, dst)
        if key not in self.wires:
            self.wires[key] = Wire(sid, port, dst, axes_label(produced, self.sizes), _renamed(v), v.type.describe())


def _renamed(v: Value) -> str:
    """`embed→d, seq→key`: what the renames between a value's producer and `v` did."""
    steps = []
    n = v.producer
    while n is not None and n.op in PASS_THROUGH:
        if n.op == "rename":
            steps.append(dict(n.attrs.get("mapping", ())))
        n = n.inputs[0].producer
    now: dict[str, str] = {}  # original name -> name at v
    for mapping in reversed(steps):
        now = {k: mapping.get(x, x) for k, x in now.items()}
        for old, new in mapping.items():
            if old not in now.values():
                now[old] = new
    return ", ".join(f"{a}→{b}" for a, b in now.items() if a != b)


def _cross_copy(a: Node, b: Node) -> bool:
    for (ga, ia, _), (gb, ib, _) in zip(a.scope.repeat, b.scope.repeat):
        if ga != gb:
            return False
        if ia != ib:
            return True
    return False


def _scalar(value) -> Optional[str]:
    try:
        import numpy as np
        arr = np.asarray(value)
        if arr.size != 1:
            return None
        x = arr.reshape(()).item()
        return f"{x:g}" if isinstance(x, float) else str(x)
    except Exception:  # an attribute that is not numeric: no note
        return None


def _order(b: Box) -> tuple:
    kinds = {"input": 0, "op": 1, "block": 1, "output": 2}
    digits = "".join(ch for ch in b.id if ch.isdigit())
    return kinds[b.kind], int(digits or 0), b.id


def build_diagram(graph: Graph, depth: int = 1, expand: Iterable[str] = (), sizes: bool = True,
                  collapse_repeats: bool = True) -> Diagram:
    """The diagram of `graph`: blocks nested deeper than `depth` closed unless named (block
    name or instance path) in `expand`; repeats drawn once unless `collapse_repeats` is off."""
    return _Builder(graph, depth, expand, sizes, collapse_repeats).build()
