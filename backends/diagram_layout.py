"""Layout of a `Diagram`: layered, left to right, deterministic.

Each open block (a `Group`) is laid out on its own, innermost first, and then placed in its
parent as one big node: so a block's boxes stay together inside its fence, and a fence
never overlaps anything else. Within a group (Sugiyama's scheme, kept O(N log N)):

1. a wire leaving or entering the group is cut at the fence: it ends at a port node on the
   right edge (`OUT`) or starts at one on the left edge (`IN`);
2. layers by longest path from the sources (networkx's topological order); a source that
   feeds only later layers (a mask, `arange`) moves right, next to its first reader;
3. an edge spanning several layers passes through one dummy slot per layer it crosses, shared
   by all edges from the same output: residual and skip connections run in their own slot
   of each column and so never cross a box;
4. order within a layer: barycentre sweeps, down and up, to reduce crossings;
5. heights: each layer is placed as close as its order allows to where its neighbours' ports
   are (isotonic regression with a minimum gap, pool-adjacent-violators, O(n) a layer);
6. a wire between columns runs straight out of its port (its axes label above it), bends
   in the middle of the gap (where there are no boxes) and runs straight into the next port.

Text has no font metrics here: every text is monospace and `text_width` estimates it, so
boxes are sized to hold their labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import networkx as nx

from .diagram import Box, Diagram

FONT, NOTE_FONT, LABEL_FONT, TITLE_FONT = 12.0, 10.0, 10.0, 11.0
CHAR_W = 0.62  # advance of a monospace glyph, in ems (DejaVu Sans Mono: 0.602)
PAD_X, PAD_Y = 10.0, 6.0  # inside a box
PORT_GAP = 14.0  # between two ports of a box: room for a wire and its label
NODE_GAP = 14.0  # between two slots of a column
GROUP_PAD, TITLE_H = 12.0, 22.0
GAP_PAD, BEND = 8.0, 36.0
DUMMY_H = 12.0
MARGIN = 16.0


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_W


def title_width(title: str, badge: str) -> float:
    """A fence's title and its `× N` badge side by side."""
    return text_width(title, TITLE_FONT) + (text_width(badge, TITLE_FONT + 2) + 16 if badge else 0.0)


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass
class Piece:
    """One drawn stretch of wire: a polyline whose steps in y are drawn as smooth bends."""
    points: list[tuple[float, float]]
    title: str
    label: str = ""  # the axes at the source, written above the first stretch
    dst_label: str = ""  # the axes as renamed on the way, above the last stretch
    arrow: bool = True  # ends at a box (not at a fence, where the wire goes on inside)


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict[str, Rect]
    groups: dict[str, Rect]
    pieces: list[Piece]


def box_size(box: Box, ports: int) -> tuple[float, float]:
    w = max([text_width(box.lines[0], FONT)] + [text_width(t, NOTE_FONT) for t in box.lines[1:]]) + 2 * PAD_X
    h = 2 * PAD_Y + FONT * 1.2 + (len(box.lines) - 1) * NOTE_FONT * 1.3
    return max(w, 36.0), max(h, (ports + 1) * PORT_GAP)


@dataclass
class _Frame:
    """A laid-out group, in its own coordinates (0, 0 at its top-left corner)."""
    w: float = 0.0
    h: float = 0.0
    at: dict[str, tuple[float, float]] = field(default_factory=dict)  # child -> top-left
    children: dict[str, "_Frame"] = field(default_factory=dict)
    in_y: dict[tuple, float] = field(default_factory=dict)  # source key -> port height on the left edge
    out_y: dict[tuple, float] = field(default_factory=dict)  # source key -> port height on the right edge
    pieces: list[Piece] = field(default_factory=list)
    sizes: dict[str, tuple[float, float]] = field(default_factory=dict)


class _Level:
    """The graph of one group's direct children and its edges, cut at the fence."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.rank: dict = {}
        self.edges: dict[tuple, list] = {}  # (src, src port, dst, dst port) -> [title, label, dst_label]

    def add(self, node, rank: float) -> None:
        if node not in self.rank:
            self.nodes.append(node)
            self.rank[node] = rank


class _Layouter:
    def __init__(self, d: Diagram) -> None:
        self.d = d
        self.box = {b.id: b for b in d.boxes}
        self.rank = {b.id: i for i, b in enumerate(d.boxes)}
        self.parent = {g.id: g.parent for g in d.groups}
        self.group = {g.id: g for g in d.groups}
        self.levels: dict[str, _Level] = {g: _Level() for g in [""] + [g.id for g in d.groups]}
        for b in d.boxes:
            self._chain_rank(b.group, self.rank[b.id])
            self.levels[b.group].add(b.id, self.rank[b.id])
        self._cut_wires()

    def _chain_rank(self, g: str, r: int) -> None:
        """A group ranks as its first box; every group is a node of its parent's level."""
        while g:
            self.levels[self.parent[g]].add(g, r)
            g = self.parent[g]

    def chain(self, g: str) -> list[str]:
        out = []
        while g:
            out.append(g)
            g = self.parent[g]
        return out[::-1]

    def _cut_wires(self) -> None:
        for w in self.d.wires:
            a, b = self.box[w.src], self.box[w.dst]
            ca, cb = self.chain(a.group), self.chain(b.group)
            k = 0
            while k < min(len(ca), len(cb)) and ca[k] == cb[k]:
                k += 1
            sk = (w.src, w.src_port)
            src = (w.src, ("o", w.src_port))
            for g in reversed(ca[k:]):  # up and out of the source's groups
                self._edge(g, src, (("OUT", sk), None), w, src[0] == w.src, False)
                src = (g, ("o", sk))
            chain_down = cb[k:]
            dst_top = (chain_down[0], ("i", sk)) if chain_down else (w.dst, ("i", sk))
            self._edge(ca[k - 1] if k else "", src, dst_top, w, src[0] == w.src, dst_top[0] == w.dst)
            for j, g in enumerate(chain_down):  # down and into the destination's groups
                dst = (chain_down[j + 1], ("i", sk)) if j + 1 < len(chain_down) else (w.dst, ("i", sk))
                self._edge(g, (("IN", sk), None), dst, w, False, dst[0] == w.dst)

    def _edge(self, g: str, src: tuple, dst: tuple, w, src_label: bool, dst_label: bool) -> None:
        lv = self.levels[g]
        for node, _ in (src, dst):
            if isinstance(node, tuple):
                lv.add(node, -1 if node[0] == "IN" else 1e12)
        key = (src[0], src[1], dst[0], dst[1])
        e = lv.edges.setdefault(key, [w.type, "", ""])
        if src_label:
            e[1] = w.label
        if dst_label:
            e[2] = w.dst_label

    # ---- one group ----

    def frame(self, g: str) -> _Frame:
        lv, fr = self.levels[g], _Frame()
        for node in lv.nodes:
            if isinstance(node, str) and node in self.group:
                fr.children[node] = self.frame(node)
        ports_in: dict = {}
        ports_out: dict = {}
        for (s, sp, t, tp) in lv.edges:
            ports_out.setdefault(s, set()).add(sp)
            ports_in.setdefault(t, set()).add(tp)
        size = {}
        for node in lv.nodes:
            if isinstance(node, tuple):
                size[node] = (0.0, PORT_GAP)
            elif node in fr.children:
                size[node] = (fr.children[node].w, fr.children[node].h)
            else:
                size[node] = box_size(self.box[node], max(len(ports_in.get(node, ())), len(ports_out.get(node, ()))))
        place = _Place(lv, size, fr, self.box, g)
        place.title_w = title_width(self.group[g].title, self.group[g].badge) if g else 0.0
        place.run()
        return fr


class _Place:
    """Layers, order and coordinates of one level (steps 2 to 6 of the module docstring)."""

    def __init__(self, lv: _Level, size: dict, fr: _Frame, boxes: dict, gid: str) -> None:
        self.lv, self.size, self.fr, self.boxes, self.gid = lv, size, fr, boxes, gid

    def run(self) -> None:
        self.layer = self.layers()
        self.chains = self.dummies()
        self.order = self.ordering()
        self.ports()
        self.coordinates()
        self.route()

    def layers(self) -> dict:
        lv = self.lv
        g = nx.DiGraph()
        g.add_nodes_from(lv.nodes)
        for (s, _, t, _) in lv.edges:
            if s != t:
                g.add_edge(s, t)
        if not nx.is_directed_acyclic_graph(g):  # a collapse folded a cycle: keep the forward edges
            g.remove_edges_from([(s, t) for s, t in list(g.edges) if lv.rank[s] >= lv.rank[t]])
            lv.edges = {k: v for k, v in lv.edges.items() if g.has_edge(k[0], k[2])}
        self.g = g
        layer: dict = {}
        for n in nx.lexicographical_topological_sort(g, key=lambda n: lv.rank[n]):
            layer[n] = max((layer[p] + 1 for p in g.predecessors(n)), default=0)
        for n in sorted(g, key=lambda n: -lv.rank[n]):  # sources move next to their first reader
            if g.in_degree(n) == 0 and g.out_degree(n) and not self._kind(n) in ("IN", "input"):
                layer[n] = max(layer[n], min(layer[s] for s in g.successors(n)) - 1)
        if any(self._kind(n) == "input" for n in g):  # inputs alone in the first column
            for n in g:
                layer[n] += self._kind(n) != "input"
        last = lambda n: self._kind(n) in ("OUT", "output")
        inner = [layer[n] for n in g if not last(n)]
        end = max(inner, default=-1) + 1
        for n in g:
            if last(n):
                layer[n] = end
        return layer

    def _kind(self, n) -> str:
        if isinstance(n, tuple):
            return n[0]
        return self.boxes[n].kind if n in self.boxes else "group"

    def dummies(self) -> dict:
        """Each edge -> the nodes it passes through, first to last; dummies are shared by the
        edges from one output."""
        chains = {}
        for key in self.lv.edges:
            s, sp, t, _ = key
            path = [s]
            for k in range(self.layer[s] + 1, self.layer[t]):
                d = ("D", s, sp, k)
                if d not in self.layer:
                    self.layer[d] = k
                    self.size[d] = (0.0, DUMMY_H)
                    self.lv.rank[d] = self.lv.rank[s] + 0.5
                path.append(d)
            path.append(t)
            chains[key] = path
        return chains

    def ordering(self) -> list[list]:
        n_layers = max(self.layer.values(), default=-1) + 1
        layers: list[list] = [[] for _ in range(n_layers)]
        for n in sorted(self.layer, key=lambda n: (self.lv.rank[n], repr(n))):
            layers[self.layer[n]].append(n)
        preds: dict = {n: set() for n in self.layer}
        succs: dict = {n: set() for n in self.layer}
        for path in self.chains.values():
            for u, v in zip(path, path[1:]):
                succs[u].add(v)
                preds[v].add(u)
        self.preds, self.succs = preds, succs
        pos = {n: i for layer in layers for i, n in enumerate(layer)}
        for sweep in range(4):
            down = sweep % 2 == 0
            seq = range(1, n_layers) if down else range(n_layers - 2, -1, -1)
            for li in seq:
                nbrs = preds if down else succs
                def bary(n):
                    ps = [pos[m] for m in nbrs[n]]
                    return (sum(ps) / len(ps) if ps else pos[n], pos[n])
                layers[li].sort(key=bary)
                for i, n in enumerate(layers[li]):
                    pos[n] = i
        self.pos = pos
        return layers

    def ports(self) -> None:
        """Port heights, relative to each node's top."""
        fr, self.out_off, self.in_off = self.fr, {}, {}
        outs: dict = {}
        ins: dict = {}
        for (s, sp, t, tp), path in self.chains.items():
            outs.setdefault(s, set()).add(sp)
            ins.setdefault(t, {})[tp] = (self.pos[path[-2]], repr(sp))
        for n, ps in outs.items():
            self._spread(n, sorted(ps, key=repr), self.out_off, fr.children[n].out_y if n in fr.children else None)
        for n, ps in ins.items():
            self._spread(n, sorted(ps, key=lambda p: (ps[p], repr(p))), self.in_off,
                         fr.children[n].in_y if n in fr.children else None)

    def _spread(self, n, ports: list, off: dict, fixed: Optional[dict]) -> None:
        h = self.size[n][1]
        for i, p in enumerate(ports):
            off[(n, p)] = fixed[p[1]] if fixed is not None else h * (i + 1) / (len(ports) + 1)

    def _port(self, n, p, out: bool) -> float:
        return (self.out_off if out else self.in_off).get((n, p), self.size[n][1] / 2)

    def coordinates(self) -> None:
        top = TITLE_H + GROUP_PAD if self.gid else MARGIN
        self.y: dict = {}
        for layer in self.order:
            y = top
            for n in layer:
                self.y[n] = y
                y += self.size[n][1] + NODE_GAP
        in_edges: dict = {}
        out_edges: dict = {}
        for (s, sp, t, tp), path in self.chains.items():
            for i, (u, v) in enumerate(zip(path, path[1:])):
                up = sp if i == 0 else None
                vp = tp if i == len(path) - 2 else None
                in_edges.setdefault(v, []).append((u, up, vp))
                out_edges.setdefault(u, []).append((v, vp, up))
        n = len(self.order)
        sweeps = [(li, True) for li in range(1, n)] + [(li, False) for li in range(n - 2, -1, -1)] + \
            [(li, True) for li in range(1, n)]
        for li, forward in sweeps:
            self._align(self.order[li], in_edges if forward else out_edges, forward)
        shift = top - min(self.y.values(), default=top)
        for n in self.y:
            self.y[n] += shift

    def _align(self, layer: list, edges: dict, forward: bool) -> None:
        """Move the layer's nodes (order kept, NODE_GAP apart) as near as possible to the
        mean height their edges' other ends ask for: pool adjacent violators."""
        want = []
        for n in layer:
            es = edges.get(n, [])
            if forward:
                ask = [self.y[m] + self._port(m, mp, True) - self._port(n, np_, False) for m, mp, np_ in es]
            else:
                ask = [self.y[m] + self._port(m, mp, False) - self._port(n, np_, True) for m, mp, np_ in es]
            want.append(sum(ask) / len(ask) if ask else self.y[n])
        offs, c = [], 0.0
        for n in layer:
            offs.append(c)
            c += self.size[n][1] + NODE_GAP
        blocks: list[list[float]] = []  # [mean, count]
        for wv, o in zip(want, offs):
            blocks.append([wv - o, 1])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                m2, c2 = blocks.pop()
                m1, c1 = blocks.pop()
                blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
        i = 0
        for mean, count in blocks:
            for _ in range(count):
                self.y[layer[i]] = mean + offs[i]
                i += 1

    def route(self) -> None:
        fr, lv = self.fr, self.lv
        left = GROUP_PAD if self.gid else MARGIN
        widths = [max((self.size[n][0] for n in layer), default=0.0) for layer in self.order]
        outw = [0.0] * len(self.order)
        inw = [0.0] * len(self.order)
        for (s, _, t, _), (title, label, dst_label) in lv.edges.items():
            outw[self.layer[s]] = max(outw[self.layer[s]], text_width(label, LABEL_FONT))
            inw[self.layer[t]] = max(inw[self.layer[t]], text_width(dst_label, LABEL_FONT))
        xs, x = [], left
        for li, wd in enumerate(widths):
            if li:
                x += GAP_PAD * 2 + outw[li - 1] + BEND + inw[li] + (GAP_PAD if inw[li] else 0)
            xs.append(x)
            x += wd
        width = x + (GROUP_PAD if self.gid else MARGIN)
        height = max((self.y[n] + self.size[n][1] for n in self.y), default=0.0) + (GROUP_PAD if self.gid else MARGIN)
        width = max(width, self.title_w + 2 * GROUP_PAD)
        self.col = [(xs[i], xs[i] + widths[i]) for i in range(len(xs))]
        for n in self.y:
            lo, hi = self.col[self.layer[n]]
            nx_ = 0.0 if isinstance(n, tuple) and n[0] == "IN" else width if isinstance(n, tuple) and n[0] == "OUT" \
                else lo + (hi - lo - self.size[n][0]) / 2
            if isinstance(n, tuple) and n[0] in ("IN", "OUT"):
                (fr.in_y if n[0] == "IN" else fr.out_y)[n[1]] = self.y[n] + self.size[n][1] / 2
            elif not (isinstance(n, tuple) and n[0] == "D"):
                fr.at[n] = (nx_, self.y[n])
        fr.w, fr.h = width, max(height, TITLE_H + 2 * GROUP_PAD)
        fr.sizes = {n: self.size[n] for n in fr.at}
        for key, path in self.chains.items():
            title, label, dst_label = lv.edges[key]
            fr.pieces.append(Piece(self._points(key, path, width), title, label, dst_label, self._kind(key[2]) != "OUT"))

    def _points(self, key, path, width) -> list[tuple[float, float]]:
        s, sp, t, tp = key
        pts: list[tuple[float, float]] = []
        for i, n in enumerate(path):
            lo, hi = self.col[self.layer[n]]
            if i == 0:
                x = 0.0 if isinstance(n, tuple) and n[0] == "IN" else self.fr.at[n][0] + self.size[n][0]
                y = self.y[n] + self._port(n, sp, True)
                pts.append((x, y))
                pts.append((hi, y))
            elif i == len(path) - 1:
                x = width if isinstance(n, tuple) and n[0] == "OUT" else self.fr.at[n][0]
                y = self.y[n] + self._port(n, tp, False)
                pts.append((lo, y))
                pts.append((x, y))
            else:
                y = self.y[n] + self.size[n][1] / 2
                pts.append((lo, y))
                pts.append((hi, y))
        return pts


def layout(d: Diagram) -> Layout:
    """Place every box, fence and wire of `d` (coordinates in px, origin top-left)."""
    lay = _Layouter(d)
    root = lay.frame("")
    out = Layout(root.w, root.h, {}, {}, [])
    _emit(root, 0.0, 0.0, out, lay)
    return out


def _emit(fr: _Frame, ox: float, oy: float, out: Layout, lay: _Layouter) -> None:
    for p in fr.pieces:
        out.pieces.append(Piece([(x + ox, y + oy) for x, y in p.points], p.title, p.label, p.dst_label, p.arrow))
    for n, (x, y) in fr.at.items():
        if n in fr.children:
            c = fr.children[n]
            out.groups[n] = Rect(x + ox, y + oy, c.w, c.h)
            _emit(c, x + ox, y + oy, out, lay)
        else:
            w, h = fr.sizes[n]
            out.boxes[n] = Rect(x + ox, y + oy, w, h)
