"""A U-Net-shaped level drawn as a U: the encoder down the left arm, the decoder up the right
arm, each skip connection a horizontal bridge across the U.

Found from the graph alone (never from a name): a *skip* is an edge spanning three layers or
more; a level whose skips nest at least two deep, with one deepest stretch, is a U. A node's
*depth* is the number of skips passing over it (strictly between their ends); its row is its
depth, and its side is left (before the deepest stretch), bottom (the deepest stretch) or
right (after it). So the source and the target of each skip lie on one row and the skip is
drawn straight across, like the arrows of the U-Net paper's figure.

Within a row and side (a *segment*) data flows left to right as everywhere else. From one
row to the next a wire leaves its source to the right, runs along a lane in the channel
between the two rows and enters its target from the left: around boxes, never through one.
A level with anything else (a wire between rows further apart, one skipping over a box of
its own row, a port on a fence) is not a U, and is laid out as usual (diagram_route).
"""
from __future__ import annotations

from typing import Optional

from .diagram_place import NODE_GAP, Heights, Order, kind
from .diagram_route import BEND, CHANNEL_PAD, GAP_PAD, LABEL_FONT, MARGIN, Piece, text_width

SKIP_SPAN = 3  # layers an edge spans to count as a skip
INDENT = 28.0  # each row of an arm sits this much further in: the arms slope like a U
LANE_H = LABEL_FONT + 8.0  # a lane in a channel between rows, with its label above it
STUB = GAP_PAD + 4.0  # out of a source / into a target before turning to a channel


def u_rows(o: Order, boxes: dict) -> Optional[dict]:
    """node -> (row, side) with side "L", "M" or "R", when the level is a U; else None."""
    real = [n for n in o.layer if kind(n, boxes) not in ("D", "IN", "OUT")]
    if any(kind(n, boxes) in ("IN", "OUT") for n in o.layer) or len(real) < 5:
        return None
    edges = [(s, t) for (s, _, t, _) in o.lv.edges]
    skips = sorted({(o.layer[s], o.layer[t]) for s, t in edges if o.layer[t] - o.layer[s] >= SKIP_SPAN})
    for i, (a0, a1) in enumerate(skips):  # nested or apart, never interleaved
        if any(a0 < b0 < a1 < b1 for b0, b1 in skips[i + 1:]):
            return None
    depth = {n: sum(a < o.layer[n] < b for a, b in skips) for n in real}
    deepest = max(depth.values(), default=0)
    if deepest < 2:
        return None
    bottom = [o.layer[n] for n in real if depth[n] == deepest]
    lo, hi = min(bottom), max(bottom)
    rows = {}
    for n in real:
        if depth[n] < deepest and lo <= o.layer[n] <= hi:
            return None  # two deepest stretches: not one U
        rows[n] = (depth[n], "M" if depth[n] == deepest else "L" if o.layer[n] < lo else "R")
    segments = _segments(rows, o)
    for s, t in edges:
        (rs, ss), (rt, st) = rows[s], rows[t]
        cols_s, cols_t = segments[rows[s]], segments[rows[t]]
        if (rs, ss) == (rt, st):
            if cols_t.index(o.layer[t]) != cols_s.index(o.layer[s]) + 1:
                return None  # would pass over a box of its own row
        elif rs == rt and ss == "L" and st == "R":
            if o.layer[s] != cols_s[-1] or o.layer[t] != cols_t[0]:
                return None
        elif not ((ss == st == "L" and rt == rs + 1) or (ss == st == "R" and rt == rs - 1)
                  or (ss, st) == ("L", "M") and rt == rs + 1 or (ss, st) == ("M", "R") and rt == rs - 1):
            return None
    return rows


def _segments(rows: dict, o: Order) -> dict:
    """(row, side) -> its columns (layers), left to right."""
    out: dict = {}
    for n, key in rows.items():
        out.setdefault(key, set()).add(o.layer[n])
    return {k: sorted(v) for k, v in out.items()}


class UShape:
    """Place a U level and draw its wires into `fr` (what diagram_route.Route does for a strip)."""

    def __init__(self, o: Order, hs: Heights, size: dict, fr, rows: dict) -> None:
        self.o, self.hs, self.size, self.fr, self.rows = o, hs, size, fr, rows
        self.segments = _segments(rows, o)
        self.deepest = max(r for r, _ in rows.values())
        self.classify()
        self.measure()
        self.place()
        self.wires()
        self.total = 0.0  # never cut into rows

    def classify(self) -> None:
        """Each edge: "in" (within a segment), "bridge" (a skip across the U) or "turn" (to
        the next row, in a lane of the channel between the two)."""
        self.edge_kind, self.lanes = {}, {}  # lanes: (channel, side) -> edges, top lane first
        for key in sorted(self.o.lv.edges, key=lambda k: (self.o.layer[k[0]], self.o.pos[k[0]], repr(k))):
            (rs, ss), (rt, st) = self.rows[key[0]], self.rows[key[2]]
            if (rs, ss) == (rt, st):
                self.edge_kind[key] = "in"
            elif rs == rt:
                self.edge_kind[key] = "bridge"
            else:
                self.edge_kind[key] = "turn"
                self.lanes.setdefault((min(rs, rt), "L" if rt > rs else "R"), []).append(key)

    def measure(self) -> None:
        """Column widths and x within each segment; the room each segment's labels need."""
        o, edges = self.o, self.o.lv.edges
        self.col_nodes: dict = {}
        for n, (r, side) in self.rows.items():
            self.col_nodes.setdefault((r, side, o.layer[n]), []).append(n)
        for nodes in self.col_nodes.values():
            nodes.sort(key=lambda n: o.pos[n])
        outw, inw = {}, {}
        for key, (_, label, dst_label) in edges.items():
            s, t = key[0], key[2]
            outw[o.layer[s]] = max(outw.get(o.layer[s], 0.0), text_width(label, LABEL_FONT))
            if self.edge_kind[key] == "in":
                inw[o.layer[t]] = max(inw.get(o.layer[t], 0.0), text_width(dst_label, LABEL_FONT))
        self.outw, self.inw = outw, inw
        self.col_x, self.seg_w = {}, {}
        for key, cols in self.segments.items():
            x = 0.0
            for i, li in enumerate(cols):
                if i:
                    x += 2 * GAP_PAD + outw.get(cols[i - 1], 0.0) + BEND + inw.get(li, 0.0) + \
                        (GAP_PAD if inw.get(li) else 0.0)
                self.col_x[(key, li)] = x
                x += self.col_w(key, li)
            self.seg_w[key] = x
        self.tail = {k: 2 * GAP_PAD + outw.get(cols[-1], 0.0) for k, cols in self.segments.items()}

    def col_w(self, key, li) -> float:
        return max(self.size[n][0] for n in self.col_nodes[key + (li,)])

    def col_h(self, key, li) -> float:
        nodes = self.col_nodes[key + (li,)]
        return sum(self.size[n][1] for n in nodes) + NODE_GAP * (len(nodes) - 1)

    def place(self) -> None:
        fr, D = self.fr, self.deepest
        seg = lambda r, s: (r, s) if (r, s) in self.segments else None
        # how wide: each row's arms and the bridge between them, the bottom, the channels' labels
        need = self.seg_w.get((D, "M"), 0.0) + self.tail.get((D, "M"), 0.0) + 2 * (MARGIN + D * INDENT)
        for r in range(D):
            left = self.seg_w[(r, "L")] + self.tail[(r, "L")] if seg(r, "L") else 0.0
            right = self.seg_w[(r, "R")] + self.tail[(r, "R")] if seg(r, "R") else 0.0
            bridge = max((text_width(self.o.lv.edges[k][2], LABEL_FONT) for k, v in self.edge_kind.items()
                          if v == "bridge" and self.rows[k[0]][0] == r), default=0.0) + BEND + 2 * GAP_PAD
            need = max(need, 2 * (MARGIN + r * INDENT) + left + bridge + right)
            # the channel below: the left arm's labels end before the right arm's begin
            label = max((text_width(self.o.lv.edges[k][1], LABEL_FONT) for k in self.lanes.get((r, "L"), [])),
                        default=0.0)
            start = MARGIN + (r + 1) * INDENT if r + 1 < D else \
                MARGIN + r * INDENT + (self.seg_w[(r, "L")] if seg(r, "L") else 0.0) + STUB
            need = max(need, start + label + 2 * STUB + right + r * INDENT + MARGIN)
        width = need
        self.seg_x = {}
        for (r, side) in self.segments:
            if side == "L":
                self.seg_x[(r, side)] = MARGIN + r * INDENT
            elif side == "R":
                self.seg_x[(r, side)] = width - MARGIN - r * INDENT - self.tail[(r, side)] - self.seg_w[(r, side)]
            else:
                self.seg_x[(r, side)] = (width - self.seg_w[(r, side)] - self.tail[(r, side)]) / 2
        self.row_mid, self.channel_top, y = [], [], MARGIN
        for r in range(D + 1):
            h = max((self.col_h(k, li) for k, cols in self.segments.items() if k[0] == r for li in cols), default=0.0)
            self.row_mid.append(y + h / 2)
            y += h
            if r < D:
                lanes = max(len(self.lanes.get((r, s), [])) for s in "LR")
                self.channel_top.append(y)
                y += 2 * CHANNEL_PAD + lanes * LANE_H
        fr.w, fr.h = width, y + MARGIN
        for (r, side, li), nodes in self.col_nodes.items():
            key = (r, side)
            x0 = self.seg_x[key] + self.col_x[(key, li)]
            cw = self.col_w(key, li)
            ny = self.row_mid[r] - self.col_h(key, li) / 2
            for n in nodes:
                w, h = self.size[n]
                fr.at[n] = (x0 + (cw - w) / 2, ny)
                ny += h + NODE_GAP
        fr.sizes = {n: self.size[n] for n in fr.at}

    def port(self, n, p, out: bool) -> tuple[float, float]:
        x, y = self.fr.at[n]
        return (x + self.size[n][0] if out else x), y + self.hs.port(n, p, out)

    def wires(self) -> None:
        for key in sorted(self.o.lv.edges, key=repr):
            title, label, dst_label = self.o.lv.edges[key]
            s, sp, t, tp = key
            (xs, ys), (xt, yt) = self.port(s, sp, True), self.port(t, tp, False)
            kind_ = self.edge_kind[key]
            if kind_ == "turn":
                (rs, _), (rt, _) = self.rows[s], self.rows[t]
                chan = min(rs, rt)
                lane = self.lanes[(chan, "L" if rt > rs else "R")].index(key)
                ly = self.channel_top[chan] + CHANNEL_PAD + (lane + 1) * LANE_H - 4
                pts = [(xs, ys), (xs + STUB, ys), (xs + STUB, ly), (xt - STUB, ly), (xt - STUB, yt), (xt, yt)]
                at = (min(xs, xt - 2 * STUB) + STUB + 4, ly - 3)  # above its stretch along the channel
                self.fr.pieces.append(Piece(pts, title, label, "", True, label_at=at))
                self.fr.w = max(self.fr.w, at[0] + text_width(label, LABEL_FONT) + MARGIN)
                continue
            layer = self.o.layer
            seg = self.rows[s]
            col_right = self.seg_x[seg] + self.col_x[(seg, layer[s])] + self.col_w(seg, layer[s])
            inw = self.inw.get(layer[t], 0.0) if kind_ == "in" else text_width(dst_label, LABEL_FONT)
            pts = [(xs, ys), (col_right + 2 * GAP_PAD + self.outw.get(layer[s], 0.0), ys),
                   (xt - inw - (GAP_PAD if inw else 0.0), yt), (xt, yt)]
            self.fr.pieces.append(Piece(pts, title, label, dst_label, True))
