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
  `repeat N shared` shares one set of weights);
- a `scan`'s body is a block level of its own (`GRUCell · scan seq`): open, its ops are drawn
  inside a fence, the scan's inputs wired to the body's readers and the body's results to
  the scan's readers; closed, one box, like any block;
- a wire from or to a closed block carries the axes as the caller names them: the renames
  binding the block's own axis names stay inside it (in the wire's tooltip).

Ids come from graph order, never from memory addresses, so the same graph gives the same
diagram. SVG, DOT and Mermaid writers all read this model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from archlang.compiler.diagnostics import CompileError, Diagnostic
from archlang.compiler.ir import Graph, Node, Scope, Value
from archlang.compiler.repeat_names import copy_name

from .diagram_axes import PASS_THROUGH, acts_and_passes, axes_label, chain, renames, scalar
from .diagram_blocks import block_passes
from .diagram_scans import ScanBodies


@dataclass
class Group:
    """An open block instance, drawn as a fenced region."""
    id: str
    parent: str  # "" for the model itself
    block: str
    path: str  # instance path, e.g. "h.0.attn"; "h.0 … h.11" for a collapsed repeat
    repeat: int = 1
    shared: bool = False
    loop: str = ""  # a scan's body: `for each seq ↻ h` (the axis it steps along, the state it carries)

    @property
    def title(self) -> str:
        return f"{self.block} · {self.path}"

    @property
    def badge(self) -> str:
        """`× 12`, `× 12 shared`, a scan's loop, or "" when not repeated."""
        if self.repeat <= 1:
            return self.loop
        return f"× {self.repeat}" + (" shared" if self.shared else "")


@dataclass
class Box:
    id: str
    kind: str  # "op" | "block" (a closed block) | "input" | "output"
    lines: list[str]  # the first is the name; more lines are notes
    group: str  # id of the enclosing Group, "" for the model
    params: list[str] = field(default_factory=list)  # "name: f32[a=1, b]" of the parameters it reads
    tooltip: str = ""
    passes: str = ""  # the axes it broadcasts over (diagram_axes), drawn through its bottom edge
    key: str = ""  # a closed block's Group id, were it open (the HTML page opens it again)

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
        if "{" in group:  # copies numbered by an expression: `as "layer1.{i+1}"`
            if e == copy_name(group, index):
                return d, False
            continue
        s, k = str(index), e.find(str(index))
        while k >= 0:
            name = e[:k] + "{i}" + e[k + len(s):]
            if name.replace(".{i}", "").replace("{i}", "") == group:
                return d, False
            k = e.find(s, k + 1)
    return None


class _Builder:
    def __init__(self, graph: Graph, depth: int, expand: Iterable[str], sizes: bool, collapse: bool,
                 close: Iterable[str] = (), reopen: Iterable[str] = ()) -> None:
        self.graph, self.depth, self.sizes, self.collapse = graph, depth, sizes, collapse
        self.expand, self.close, self.reopen = set(expand), set(close), set(reopen)
        scans = ScanBodies(graph.nodes)
        self.scope_of, self.body_in, self.body_out, self.loops = scans.scope_of, scans.body_in, scans.body_out, \
            scans.loops
        self.type_text: dict = {}  # TensorType -> its text
        self.nodes = scans.nodes
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.levels_cache: dict[Scope, list[_Level]] = {}
        self.source_cache: dict[int, tuple] = {}
        self.boxes: dict[str, Box] = {}
        self.groups: dict[str, Group] = {}
        self.wires: dict[tuple, Wire] = {}
        self.block_ports: dict[tuple[str, int, int], int] = {}  # (block box, node index, output) -> port
        self.port_count: dict[str, int] = {}

    # ---- scopes and repeats ----

    def sc(self, n: Node) -> Scope:
        return self.scope_of.get(id(n), n.scope)

    def levels(self, scope: Scope) -> list[_Level]:
        if scope in self.levels_cache:
            return self.levels_cache[scope]
        reps: dict[int, tuple[int, int, bool]] = {}
        start = 0
        for group, i, count in scope.repeat:
            found = _repeat_depth(scope.path, group, i, start)
            if found is not None:
                reps[found[0]] = (count, i, found[1], group)
                start = found[0] + 1
        out, copies = [], []
        for d, (elem, block) in enumerate(zip(scope.path, scope.block)):
            count, i, shared, group = reps.get(d, (1, 0, False, ""))
            copies.append(str(i))
            path = ".".join(scope.path[:d + 1])
            if count > 1 and self.collapse and not shared:
                numbered = "{" in group
                first, last = (".".join(scope.path[:d] + (copy_name(group, k) if numbered else
                                                          elem.replace(str(i), str(k), 1),)) for k in (0, count - 1))
                path = f"{first} … {last}" if numbered or elem.count(str(i)) == 1 else path
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
        for n in self.nodes:
            span = (n.span.file, n.span.line, n.span.column) if n.span else None
            rep = self.sc(n).repeat
            base = (tuple((g, c) for g, _, c in rep), n.op, span)
            own = base + (tuple(i for _, i, _ in rep),)
            k = seen.get(own, 0)
            seen[own] = k + 1
            if all(i == 0 for _, i, _ in rep):
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
        if id(v) in self.body_in:
            out = self.source(self.body_in[id(v)])
        elif id(v) in self.body_out:
            out = self.source(self.body_out[id(v)])
        elif n is None:
            names = [name for name, iv in self.graph.inputs if iv is v]
            out = ("input", names[0]) if names else ("none",)
        elif n.op in PASS_THROUGH:
            out = self.source(n.inputs[0])
        elif n.op == "param":
            out = ("param", n.attrs.get("name", "?"), self.describe(v))
        elif n.op == "const":
            out = ("const", n.attrs.get("value"))
        else:
            out = ("node", n, n.outputs.index(v))
        self.source_cache[v.id] = out
        return out

    # ---- boxes ----

    def unit(self, n: Node) -> tuple[str, bool]:
        """The box drawing node `n` (its own, or its closed block's) and whether it is a block."""
        levels = self.levels(self.sc(n))
        parent = ""
        for d, lv in enumerate(levels):
            if self.is_closed(d, lv):
                bid = "b" + str(self.index[id(n)]) if lv.key not in self.block_ids else self.block_ids[lv.key]
                if lv.key not in self.block_ids:
                    self.block_ids[lv.key] = bid
                    self.block_depth[bid] = d
                    note = lv.path + (f"  × {lv.repeat}" + (" shared" if lv.shared else "") if lv.repeat > 1 else "")
                    self.boxes[bid] = Box(bid, "block", [lv.block, note], parent, tooltip=f"block {lv.block} {lv.path}",
                                          key=lv.key)
                return bid, True
            if lv.key not in self.groups:
                self.groups[lv.key] = Group(lv.key, parent, lv.block, lv.path, lv.repeat, lv.shared,
                                            self.loops.get(self.sc(n).path[:d + 1], ""))
            parent = lv.key
        bid = "n" + str(self.index[id(n)])
        if bid not in self.boxes:
            data = [v for v in n.inputs if self.source(v)[0] not in ("param", "const")]
            acts, passes = acts_and_passes(n, data)
            where = f"{n.span.file.split('/')[-1]}:{n.span.line}:{n.span.column}" if n.span else ""
            tip = f"{n.op} {where}".strip() + (f"\nacts on: {acts}" if acts else "") + \
                (f"\nbroadcast over: {passes}" if passes else "")
            self.boxes[bid] = Box(bid, "op", [n.op] + ([acts] if acts else []), parent, tooltip=tip, passes=passes)
        return bid, False

    def open_keys(self, nodes: list[Node]) -> set[str]:
        """Groups --expand opens, with their ancestors; an unknown name is an error."""
        opened, matched = set(), set()
        for n in nodes:
            levels = self.levels(self.sc(n))
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
        drawn = [n for n in self.nodes if canon[id(n)] is n and n.op not in PASS_THROUGH | {"param", "const"}
                 and not (n.op == "scan" and "body" in n.attrs)]
        self.opened = self.open_keys(drawn)
        self.block_ids: dict[str, str] = {}
        self.block_depth: dict[str, int] = {}  # a closed block's box -> its level
        self.block_ins: dict[str, list[Value]] = {}  # a closed block's box -> the values on its wires in
        self.block_outs: dict[str, list[Value]] = {}  # ... and out, in the caller's names
        for k, (name, v) in enumerate(self.graph.inputs):
            self.boxes[f"in{k}"] = Box(f"in{k}", "input", [name], "", tooltip=f"input {name}: {v.type.describe()}")
        units = {id(n): self.unit(n) for n in drawn}
        for n in drawn:
            self.connect(n, units, canon)
        for k, (name, v) in enumerate(self.graph.outputs):
            self.boxes[f"out{k}"] = Box(f"out{k}", "output", [name], "", tooltip=f"output {name}: {v.type.describe()}")
            self.wire(v, f"out{k}", units, canon, None)
        for bid, passes in block_passes(self, self.block_ins, self.block_outs).items():
            self.boxes[bid].passes = passes
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
                if not is_block and scalar(src[1]) is not None and len(box.lines) < 3:
                    box.lines.append(scalar(src[1]))
            else:
                self.wire(v, dst, units, canon, n)

    def wire(self, v: Value, dst: str, units: dict, canon: dict, reader: Optional[Node]) -> None:
        src = self.source(v)
        if src[0] == "input":
            k = [n for n, _ in self.graph.inputs].index(src[1])
            sid, port, produced = f"in{k}", 0, self.graph.inputs[k][1]
        elif src[0] == "node":
            m = src[1]
            if self.collapse and reader is not None and _cross_copy(self.sc(m), self.sc(reader)):
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
                head = chain(v)[0]
                if id(head) in self.body_out and m is m0:
                    k, produced = (sid, "scan", id(head)), head  # a closed scan's result, as stacked
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
            label, dst_label = self.boundary_labels(v, sid, dst, produced, reader)
            self.wires[key] = Wire(sid, port, dst, label, dst_label, self.describe(v))

    def describe(self, v: Value) -> str:
        """`f32[batch, seq, embed=768]`, once per type (types are shared by many values)."""
        text = self.type_text.get(v.type)
        if text is None:
            text = self.type_text[v.type] = v.type.describe()
        return text

    def boundary_labels(self, v: Value, src: str, dst: str, produced: Value,
                        reader: Optional[Node]) -> tuple[str, str]:
        """The wire's axes where it leaves its source, and the renames on its way: past a
        closed block's exit renames, before a closed block's entry renames (both bind the
        block's own axis names, which a closed block does not show)."""
        values = chain(v)
        path = lambda val, d: self.sc(val.producer).path[:d]
        start, end = 0, len(values)
        if src in self.block_depth and values[0].producer is not None:
            d = self.block_depth[src] + 1
            inner = path(values[0], d)
            while start + 1 < end and path(values[start + 1], d) == inner:
                start += 1
            nxt = values[start + 1].producer if start + 1 < end else None
            if nxt is not None and nxt.op == "rename" and self.sc(nxt).path == inner[:-1]:
                start += 1  # the rename back to the caller's names at the block's exit
        if dst in self.block_depth and reader is not None:
            d = self.block_depth[dst] + 1
            inner = self.sc(reader).path[:d]
            while end - 1 > start and path(values[end - 1], d) == inner:
                end -= 1
        shown = values[start:end]
        if src in self.block_depth:
            self.block_outs.setdefault(src, []).append(shown[0] if start else produced)
        if dst in self.block_depth:
            self.block_ins.setdefault(dst, []).append(shown[-1])
        return axes_label(shown[0] if start else produced, self.sizes), renames(shown)

    def closed_box(self, scope: Scope) -> Optional[str]:
        """The box of the closed block `scope` lies in, None when every level is open."""
        for d, lv in enumerate(self.levels(scope)):
            if self.is_closed(d, lv):
                return self.block_ids.get(lv.key)
        return None

    def is_closed(self, d: int, lv: _Level) -> bool:
        return not (d < self.depth or lv.key in self.opened or lv.key in self.reopen) or lv.key in self.close


def _cross_copy(a: Scope, b: Scope) -> bool:
    for (ga, ia, _), (gb, ib, _) in zip(a.repeat, b.repeat):
        if ga != gb:
            return False
        if ia != ib:
            return True
    return False


def _order(b: Box) -> tuple:
    kinds = {"input": 0, "op": 1, "block": 1, "output": 2}
    digits = "".join(ch for ch in b.id if ch.isdigit())
    return kinds[b.kind], int(digits or 0), b.id


def build_diagram(graph: Graph, depth: int = 1, expand: Iterable[str] = (), sizes: bool = True,
                  collapse_repeats: bool = True, close: Iterable[str] = (), reopen: Iterable[str] = ()) -> Diagram:
    """The diagram of `graph`: blocks nested deeper than `depth` closed unless named (block
    name or instance path) in `expand`; repeats drawn once unless `collapse_repeats` is off;
    the groups whose ids are in `close` closed and the closed blocks whose `Box.key` is in
    `reopen` open (the HTML page's other states)."""
    return _Builder(graph, depth, expand, sizes, collapse_repeats, close, reopen).build()
