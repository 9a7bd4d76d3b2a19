"""Columns, rows and wires of one level (steps 6 and 7 of diagram_layout's docstring).

The level's layers are columns of one long strip; when the strip is wider than the row
width asked for, it is cut between columns into rows stacked top to bottom (a line of text
wrapping), each row as wide as the others as far as the columns allow and cut where few
wires cross. A wire crossing a cut leaves its row to the right, runs down a lane of its own
beside the row, left along a channel below it, down a lane left of the next row and into
its target: around every box, never through one. Lanes are ordered so that wires crossing
one cut do not cross each other (the top one outermost on the right, innermost on the left).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .diagram_place import Heights, Order, kind

CHAR_W = 0.62  # advance of a monospace glyph, in ems (DejaVu Sans Mono: 0.602)
LABEL_FONT = 10.0
GROUP_PAD, TITLE_H = 12.0, 22.0
GAP_PAD, BEND = 8.0, 36.0
MARGIN = 16.0
LANE = 8.0  # between two wires running side by side around a row
CHANNEL_PAD = 12.0  # above and below the wires running between two rows
WRAP_SLACK = 1.15  # a strip up to this much wider than asked stays one row
CROSS_COST = 0.4  # of each wire crossing a cut past the first (every cut has one),
#                   against rows of unequal width ((w - mean) / mean)**2


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_W


@dataclass
class Piece:
    """One drawn stretch of wire: a polyline whose steps in y are drawn as smooth bends."""
    points: list[tuple[float, float]]
    title: str
    label: str = ""  # the axes at the source, written above the first stretch
    dst_label: str = ""  # the axes as renamed on the way, above the last stretch
    arrow: bool = True  # ends at a box (not at a fence, where the wire goes on inside)
    group: str = ""  # the fence it is drawn in ("" for the model)
    label_at: Optional[tuple[float, float]] = None  # where `label` starts, when not at the first point


def _cut_cost(w: float, target: float) -> float:
    return ((w - target) / target) ** 2


class Route:
    """Cut the strip of one level into rows, place its nodes and draw its wires into `fr`."""

    def __init__(self, o: Order, hs: Heights, size: dict, fr, gid: str, title_w: float, wmax) -> None:
        self.o, self.hs, self.size, self.fr, self.gid = o, hs, size, fr, gid
        self.pad = GROUP_PAD if gid else MARGIN
        self.columns()
        self.crossings()
        self.rows = self.cut(wmax)
        self.place(title_w)
        self.wires()

    def k(self, n) -> str:
        return kind(n, self.o.boxes)

    def columns(self) -> None:
        o, n = self.o, len(self.o.order)
        self.widths = [max((self.size[m][0] for m in layer), default=0.0) for layer in o.order]
        self.outw, self.inw = [0.0] * n, [0.0] * n
        for (s, _, t, _), (title, label, dst_label) in o.lv.edges.items():
            self.outw[o.layer[s]] = max(self.outw[o.layer[s]], text_width(label, LABEL_FONT))
            self.inw[o.layer[t]] = max(self.inw[o.layer[t]], text_width(dst_label, LABEL_FONT))
        self.lo, x = [], 0.0
        for li, wd in enumerate(self.widths):
            if li:
                x += self.gap(li)
            self.lo.append(x)
            x += wd
        self.total = x  # the strip's width

    def gap(self, li: int) -> float:
        """Between column li-1 and li: the source labels, the bend, the renamed labels."""
        return 2 * GAP_PAD + self.outw[li - 1] + BEND + self.inw[li] + (GAP_PAD if self.inw[li] else 0.0)

    def y_at(self, path: list, i: int, key: tuple) -> float:
        """Height (in the strip) of the wire `path` where it meets its i-th node."""
        n, hs = path[i], self.hs
        if i == 0:
            return hs.y[n] + hs.port(n, key[1], True)
        if i == len(path) - 1:
            return hs.y[n] + hs.port(n, key[3], False)
        return hs.y[n] + self.size[n][1] / 2

    def crossings(self) -> None:
        """For each gap between columns, the stretches of wire crossing it: (u, y, v, y)."""
        self.cross: list[dict] = [dict() for _ in self.o.order]
        for key, path in self.o.chains.items():
            for i in range(len(path) - 1):
                seg = (path[i], round(self.y_at(path, i, key), 3), path[i + 1], round(self.y_at(path, i + 1, key), 3))
                self.cross[self.o.layer[path[i + 1]]][seg] = None

    def cut(self, wmax) -> list[tuple[int, int]]:
        """Rows as (first layer, end layer): one when the strip fits in `wmax`, else as many as
        it takes, balanced by dynamic programming over the cut positions."""
        n, total = len(self.o.order), self.total
        if wmax is None or n < 4 or total <= wmax * WRAP_SLACK:
            return [(0, n)]
        target = total / math.ceil(total / wmax)
        only = lambda li, kinds: all(self.k(m) in kinds for m in self.o.order[li])
        banned = {1} if only(0, ("IN", "input")) else set()
        if only(n - 1, ("OUT", "output")):
            banned.add(n - 1)
        best: list = [(0.0, -1)] + [None] * n  # best[j]: cost of rows covering layers [0, j), previous cut
        for j in range(1, n + 1):
            for a in range(j - 1, -1, -1):
                if best[a] is None or (a and a in banned):
                    continue
                w = self.lo[j - 1] + self.widths[j - 1] - self.lo[a]
                if w > 1.6 * target and best[j] is not None:
                    break
                crossing = len({s[:2] for s in self.cross[a]}) - 1 if a else 0
                cost = best[a][0] + _cut_cost(w, target) + CROSS_COST * crossing
                if best[j] is None or cost < best[j][0] - 1e-9:
                    best[j] = (cost, a)
        rows, j = [], n
        while j > 0:
            a = best[j][1]
            rows.append((a, j))
            j = a
        return rows[::-1]

    def place(self, title_w: float) -> None:
        o, fr, hs = self.o, self.fr, self.hs
        self.row_of = {}
        self.dx, self.dy = [], []
        self.right_lane: list[dict] = []  # per row: u-point -> (lane x, track y) below it
        self.left_lane: list[dict] = []  # per row: stretch -> lane x left of it
        top = TITLE_H + GROUP_PAD if self.gid else MARGIN
        y, right = top, 0.0
        for r, (a, b) in enumerate(self.rows):
            for li in range(a, b):
                self.row_of[li] = r
            segs = sorted(self.cross[a], key=lambda s: (s[3], s[1], repr(s))) if r else []
            x0 = self.pad
            if r:  # lanes in from the channel above: the lowest entry outermost
                self.left_lane.append({s: self.pad + (len(segs) - 1 - i + 0.5) * LANE for i, s in enumerate(segs)})
                x0 += len(segs) * LANE + 3 * GAP_PAD + self.inw[a]
            else:
                self.left_lane.append({})
            self.dx.append(x0 - self.lo[a])
            nodes = [m for li in range(a, b) for m in o.order[li]]
            top_r = min((hs.y[m] for m in nodes), default=0.0)
            bottom = max((hs.y[m] + self.size[m][1] for m in nodes), default=0.0)
            self.dy.append(y - top_r)
            y = bottom + self.dy[-1]
            end = self.lo[b - 1] + self.widths[b - 1] + self.dx[-1]
            lanes: dict = {}
            if b < len(o.order):  # lanes out to the channel below: the top wire outermost, lowest
                ups = sorted({s[:2] for s in self.cross[b]}, key=lambda p: (p[1], repr(p[0])))
                base = end + 2 * GAP_PAD + self.outw[b - 1]
                for i, p in enumerate(ups):
                    j = len(ups) - 1 - i
                    lanes[p] = (base + (j + 0.5) * LANE, y + CHANNEL_PAD + (j + 0.5) * LANE)
                end = base + len(ups) * LANE
                y += 2 * CHANNEL_PAD + len(ups) * LANE
            self.right_lane.append(lanes)
            right = max(right, end)
        width = max(right + self.pad, title_w + 2 * GROUP_PAD)
        fr.w, fr.h = width, max(y + self.pad, TITLE_H + 2 * GROUP_PAD)
        self.width = width
        for n in hs.y:
            r = self.row_of[o.layer[n]]
            ny = hs.y[n] + self.dy[r]
            c = self.k(n)
            if c in ("IN", "OUT"):
                (fr.in_y if c == "IN" else fr.out_y)[n[1]] = ny + self.size[n][1] / 2
            elif c != "D":
                lo, hi = self.col(o.layer[n])
                fr.at[n] = (lo + (hi - lo - self.size[n][0]) / 2, ny)
        fr.sizes = {n: self.size[n] for n in fr.at}

    def col(self, li: int) -> tuple[float, float]:
        x = self.lo[li] + self.dx[self.row_of[li]]
        return x, x + self.widths[li]

    def wires(self) -> None:
        for key, path in self.o.chains.items():
            title, label, dst_label = self.o.lv.edges[key]
            self.fr.pieces.append(Piece(self.points(key, path), title, label, dst_label, self.k(key[2]) != "OUT"))

    def points(self, key, path) -> list[tuple[float, float]]:
        layer, pts = self.o.layer, []
        ys = [self.y_at(path, i, key) for i in range(len(path))]
        for i, n in enumerate(path):
            li = layer[n]
            r = self.row_of[li]
            y = ys[i] + self.dy[r]
            lo, hi = self.col(li)
            c = self.k(n)
            if i == 0:
                pts.append((0.0 if c == "IN" else self.fr.at[n][0] + self.size[n][0], y))
            elif i == len(path) - 1:
                pts.append((self.width if c == "OUT" else self.fr.at[n][0], y))
            else:
                pts += [(lo, y), (hi, y)]
            if i == len(path) - 1:
                break
            nxt = path[i + 1]
            r2 = self.row_of[li + 1]
            y2 = ys[i + 1] + self.dy[r2]
            if r2 == r:
                lo2 = self.col(li + 1)[0]
                pts += [(hi + 2 * GAP_PAD + self.outw[li], y),
                        (lo2 - self.inw[li + 1] - (GAP_PAD if self.inw[li + 1] else 0.0), y2)]
            else:  # around: right lane, channel, left lane
                seg = (n, round(ys[i], 3), nxt, round(ys[i + 1], 3))
                xr, track = self.right_lane[r][seg[:2]]
                xl = self.left_lane[r2][seg]
                pts += [(xr, y), (xr, track), (xl, track), (xl, y2)]
        return pts
