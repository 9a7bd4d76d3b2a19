"""Layout of a `Diagram`: layered, left to right, wrapped into rows, deterministic.

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
6. the layers are columns of a strip; a strip wider than the row width is cut into rows
   stacked top to bottom, and a wire crossing a cut runs around the rows in lanes of its own;
7. a wire between columns runs straight out of its port (its axes label above it), bends
   in the gap (where there are no boxes) and runs straight into the next port.

Steps 2-4 are diagram_place.Order, step 5 diagram_place.Heights, steps 6-7 diagram_route.
A level whose skip connections nest (a U-Net's) is drawn as a U instead of steps 6-7, never
cut into rows (diagram_ushape).
The row width is the same for every group, chosen (a few tries, steps 2-4 kept between
them) so that the whole drawing is about `ASPECT` wide for its height.

Text has no font metrics here: every text is monospace and `text_width` estimates it, so
boxes are sized to hold their labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .diagram import Box, Diagram
from .diagram_place import DUMMY_H, Heights, Order
from .diagram_ushape import UShape, u_rows
from .diagram_route import (WRAP_SLACK, BEND, CHAR_W, GAP_PAD, GROUP_PAD, LABEL_FONT, MARGIN, TITLE_H, Piece, Route,
                            text_width)

__all__ = ["BEND", "CHAR_W", "GAP_PAD", "GROUP_PAD", "LABEL_FONT", "MARGIN", "TITLE_H", "Piece", "text_width",
           "FONT", "NOTE_FONT", "TITLE_FONT", "PASS_FONT", "BAND_H", "PASS_STUB", "Rect", "Layout", "layout",
           "box_size", "title_width"]

FONT, NOTE_FONT, TITLE_FONT = 12.0, 10.0, 11.0
PASS_FONT, BAND_H, PASS_STUB = 9.0, 15.0, 10.0  # a box's band of broadcast axes
PAD_X, PAD_Y = 10.0, 6.0  # inside a box
PORT_GAP = 14.0  # between two ports of a box: room for a wire and its label
OUT_GAP = 22.0  # between two labelled ports of a box (its outputs, or renamed inputs)
ASPECT = 1.6  # width / height the row width aims at (16:10)
PLAIN_W = 1400.0  # a drawing this wide or less stays in one row, whatever its height
MIN_ROW_W = 640.0  # rows are never asked to be narrower


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
class Layout:
    width: float
    height: float
    boxes: dict[str, Rect]
    groups: dict[str, Rect]
    pieces: list[Piece]


def box_size(box: Box, ports: int, labelled: int = 1) -> tuple[float, float]:
    """Room for the box's text, and for its ports: `labelled` ports on one side carry an axes
    label each, so sit OUT_GAP apart."""
    w = max([text_width(box.lines[0], FONT)] + [text_width(t, NOTE_FONT) for t in box.lines[1:]]) + 2 * PAD_X
    h = 2 * PAD_Y + FONT * 1.2 + (len(box.lines) - 1) * NOTE_FONT * 1.3
    if box.passes:  # the band the broadcast axes pass through, a stub of wire either side
        w, h = max(w, text_width(box.passes, PASS_FONT) + 2 * PAD_X + 2 * PASS_STUB), h + BAND_H
    return max(w, 36.0), max(h, (ports + 1) * PORT_GAP, (labelled + 1) * OUT_GAP if labelled > 1 else 0.0)


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
    natural: float = 0.0  # the widest strip in it (its own or a block's) before any is cut into rows


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
        self.orders: dict[str, Order] = {}
        self.plain: dict[str, _Frame] = {}  # each group laid out in one row

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

    def frame(self, g: str, wmax: Optional[float]) -> _Frame:
        """Group `g` laid out with rows at most about `wmax` wide (None: one row). A group
        whose strips (its own and its blocks') all fit is the same as laid out in one row."""
        plain = self.plain.get(g)
        if plain is not None and wmax is not None and plain.natural <= wmax * WRAP_SLACK:
            return plain
        lv, fr = self.levels[g], _Frame()
        for node in lv.nodes:
            if isinstance(node, str) and node in self.group:
                fr.children[node] = self.frame(node, wmax)
        if g not in self.orders:
            self.orders[g] = Order(lv, self.box)
        o = self.orders[g]
        ports_in: dict = {}
        ports_out: dict = {}
        for (s, sp, t, tp) in lv.edges:
            ports_out.setdefault(s, set()).add(sp)
            ports_in.setdefault(t, set()).add(tp)
        renamed = {t for (s, _, t, _), e in lv.edges.items() if e[2]}  # its inputs labelled too
        size = {}
        for node in o.layer:
            if isinstance(node, tuple):
                size[node] = (0.0, DUMMY_H if node[0] == "D" else PORT_GAP)
            elif node in fr.children:
                size[node] = (fr.children[node].w, fr.children[node].h)
            else:
                n_in, n_out = len(ports_in.get(node, ())), len(ports_out.get(node, ()))
                size[node] = box_size(self.box[node], max(n_in, n_out), max(n_out, n_in if node in renamed else 0))
        hs = Heights(o, size, fr.children, TITLE_H + GROUP_PAD if g else MARGIN)
        title_w = title_width(self.group[g].title, self.group[g].badge) if g else 0.0
        rows = u_rows(o, self.box)
        route = UShape(o, hs, size, fr, rows) if rows else Route(o, hs, size, fr, g, title_w, wmax)
        fr.natural = max([route.total] + [c.natural for c in fr.children.values()])
        if wmax is None:
            self.plain[g] = fr
        return fr


def _fit(lay: "_Layouter") -> _Frame:
    """The root laid out with the row width whose drawing comes nearest `ASPECT`: one row
    when that is not too wide, else a few tries, each correcting the width by the square
    root of the aspect missed (rows of width w give about ASPECT * (w / w0)**2)."""
    root = lay.frame("", None)
    if root.w <= ASPECT * 1.3 * root.h or root.w <= PLAIN_W:
        return root
    best = None
    wmax = max(math.sqrt(root.w * root.h * ASPECT), MIN_ROW_W)
    for _ in range(4):
        fr = lay.frame("", wmax)
        miss = abs(math.log(fr.w / fr.h / ASPECT))
        if best is None or miss < best[0] - 1e-9:
            best = (miss, fr)
        if miss < 0.15:
            break
        wmax = max(wmax * math.sqrt(ASPECT * fr.h / fr.w), MIN_ROW_W)
    return best[1]


def layout(d: Diagram) -> Layout:
    """Place every box, fence and wire of `d` (coordinates in px, origin top-left)."""
    lay = _Layouter(d)
    root = _fit(lay)
    out = Layout(root.w, root.h, {}, {}, [])
    _emit(root, 0.0, 0.0, out, lay)
    return out


def _emit(fr: _Frame, ox: float, oy: float, out: Layout, lay: _Layouter, gid: str = "") -> None:
    for p in fr.pieces:
        at = (p.label_at[0] + ox, p.label_at[1] + oy) if p.label_at else None
        out.pieces.append(Piece([(x + ox, y + oy) for x, y in p.points], p.title, p.label, p.dst_label, p.arrow, gid,
                                at))
    for n, (x, y) in fr.at.items():
        if n in fr.children:
            c = fr.children[n]
            out.groups[n] = Rect(x + ox, y + oy, c.w, c.h)
            _emit(c, x + ox, y + oy, out, lay, n)
        else:
            w, h = fr.sizes[n]
            out.boxes[n] = Rect(x + ox, y + oy, w, h)
