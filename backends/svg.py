"""SVG of a laid-out diagram, written by archlang itself (no Graphviz, no browser).

Fences (open blocks) first, outermost first, so inner ones and the boxes lie on top;
then wires and their axis labels; then boxes, each with the band of the axes it broadcasts
over along its bottom edge (a stub of wire through it either side of their names). Every coordinate is absolute (no
transforms) and printed with at most one decimal, so the geometry can be read back from
the file (tests do) and the same diagram always gives the same bytes. Each box's `<g>`,
each wire and each label carries `data-group`, the fence it is drawn in (the HTML page's
script closes a fence by hiding what it holds); each fence's `<g>` carries `data-parent`, and
a closed block's box `data-key`, the id its fence has when open.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from .diagram import Diagram
from .diagram_layout import (BAND_H, FONT, LABEL_FONT, NOTE_FONT, PASS_FONT, PASS_STUB, TITLE_FONT, Layout, Rect,
                             text_width)

STYLE = """
text { font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; fill: #222; }
.fence { fill: #f6f8fc; stroke: #7a8db3; stroke-width: 1.2; stroke-dasharray: 6 3; }
.stack { fill: #eef2f9; stroke: #9aaacb; stroke-width: 1; }
.title { font-size: 11px; font-weight: bold; fill: #3d4f7a; }
.badge { font-size: 13px; font-weight: bold; fill: #b3261e; }
.op rect { fill: #ffffff; stroke: #444; stroke-width: 1; }
.param rect { stroke: #111; stroke-width: 2.4; }
.param text.name { font-weight: bold; }
.block rect { fill: #fff6dd; stroke: #a8842c; stroke-width: 1.4; }
.input rect { fill: #e4f1ff; stroke: #3b73b9; }
.output rect { fill: #e6f6e6; stroke: #3c8d3c; }
.note { fill: #666; }
.box rect.band { fill: #eef3ee; stroke: none; }
.through { stroke: #7d9c7d; stroke-width: 1.2; }
.pass { fill: #4d6b4d; font-style: italic; }
.wire { fill: none; stroke: #5c6b80; stroke-width: 1.2; }
.label { font-size: 10px; fill: #56607a; }
"""


CORNER = 6.0  # radius of a wire's turn around a row


def _n(v: float) -> str:
    """At most one decimal, no trailing zeros: stable text for stable bytes."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def xml_attr(text: str) -> str:
    return escape(text, {'"': "&quot;"})


def _path(points: list[tuple[float, float]]) -> str:
    """Straight where x or y stays (rounded where a horizontal and a vertical stretch meet, as
    around rows), a smooth S-bend (horizontal tangents) where both change."""
    points = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    out = [f"M{_n(points[0][0])} {_n(points[0][1])}"]
    axis = lambda a, b: "h" if abs(a[1] - b[1]) < 0.05 else "v" if abs(a[0] - b[0]) < 0.05 else ""
    sign = lambda v: (v > 0) - (v < 0)
    x0, y0 = points[0]
    for i in range(1, len(points)):
        (x1, y1), a = points[i], axis(points[i - 1], points[i])
        nxt = points[i + 1] if i + 1 < len(points) else None
        b = axis(points[i], nxt) if nxt else ""
        if a and b and a != b:  # a corner: stop short of it and turn on a quarter curve
            r = min(CORNER, abs(x1 - x0 + y1 - y0) / 2, abs(nxt[0] - x1 + nxt[1] - y1) / 2)
            ux, uy = sign(x1 - x0), sign(y1 - y0)
            vx, vy = sign(nxt[0] - x1), sign(nxt[1] - y1)
            out.append(f"L{_n(x1 - r * ux)} {_n(y1 - r * uy)}Q{_n(x1)} {_n(y1)} {_n(x1 + r * vx)} {_n(y1 + r * vy)}")
            x0, y0 = x1 + r * vx, y1 + r * vy
            continue
        if a:
            out.append(f"L{_n(x1)} {_n(y1)}")
        else:
            mx = (x0 + x1) / 2
            out.append(f"C{_n(mx)} {_n(y0)} {_n(mx)} {_n(y1)} {_n(x1)} {_n(y1)}")
        x0, y0 = x1, y1
    return "".join(out)


def _depth(d: Diagram) -> dict[str, int]:
    parent = {g.id: g.parent for g in d.groups}
    depth: dict[str, int] = {}
    for g in d.groups:
        k, p = 0, g.parent
        while p:
            k, p = k + 1, parent[p]
        depth[g.id] = k
    return depth


def _fences(d: Diagram, lay: Layout) -> list[str]:
    out = []
    depth = _depth(d)
    for g in sorted(d.groups, key=lambda g: (depth[g.id], g.id)):
        r = lay.groups[g.id]
        out.append(f'<g class="group" id="{xml_attr(g.id)}" data-parent="{xml_attr(g.parent)}">')
        if g.repeat > 1:  # a stack of cards: the copies the fence stands for
            for k in (6, 3):
                out.append(f'<rect class="stack" x="{_n(r.x + k)}" y="{_n(r.y + k)}" width="{_n(r.w)}" '
                           f'height="{_n(r.h)}" rx="6"/>')
        out.append(f'<rect class="fence" x="{_n(r.x)}" y="{_n(r.y)}" width="{_n(r.w)}" height="{_n(r.h)}" rx="6"/>')
        out.append(f'<text class="title" x="{_n(r.x + 12)}" y="{_n(r.y + 16)}" font-size="{_n(TITLE_FONT)}">'
                   f'{escape(g.title)}</text>')
        if g.badge:
            out.append(f'<text class="badge" x="{_n(r.x + r.w - 12)}" y="{_n(r.y + 17)}" font-size="{_n(TITLE_FONT + 2)}" '
                       f'text-anchor="end">{escape(g.badge)}</text>')
        out.append("</g>")
    return out


def _wires(lay: Layout) -> list[str]:
    out, labels = [], {}
    for p in lay.pieces:
        marker = ' marker-end="url(#arrow)"' if p.arrow else ""
        out.append(f'<path class="wire" d="{_path(p.points)}" data-group="{xml_attr(p.group)}"{marker}>'
                   f'<title>{escape(p.title)}</title></path>')
        if p.label:
            x, y = p.label_at or (p.points[0][0] + 4, p.points[0][1] - 3)
            labels.setdefault((_n(x), _n(y), p.label), p.group)
        if p.dst_label:
            x, y = p.points[-1]
            labels.setdefault((_n(x - 6 - text_width(p.dst_label, LABEL_FONT)), _n(y - 3), p.dst_label), p.group)
    for (x, y, text), group in labels.items():
        out.append(f'<text class="label" x="{x}" y="{y}" font-size="{_n(LABEL_FONT)}" data-group="{xml_attr(group)}">'
                   f'{escape(text)}</text>')
    return out


def _boxes(d: Diagram, lay: Layout) -> list[str]:
    out = []
    for b in d.boxes:
        r: Rect = lay.boxes[b.id]
        cls = b.kind + (" param" if b.bold else "")
        tip = "\n".join([b.tooltip] + ([f"parameters ({len(b.params)}):"] + b.params[:24] +
                                       (["…"] if len(b.params) > 24 else []) if b.params else []))
        key = f' data-key="{xml_attr(b.key)}"' if b.key else ""
        out.append(f'<g class="box {cls}" id="{xml_attr(b.id)}" data-group="{xml_attr(b.group)}"{key}>'
                   f'<title>{escape(tip)}</title>')
        rx = 12 if b.kind in ("input", "output") else 3
        out.append(f'<rect x="{_n(r.x)}" y="{_n(r.y)}" width="{_n(r.w)}" height="{_n(r.h)}" rx="{rx}"/>')
        text_h = FONT * 1.2 + (len(b.lines) - 1) * NOTE_FONT * 1.3
        band = BAND_H if b.passes else 0.0
        y = r.y + (r.h - band - text_h) / 2 + FONT * 0.95
        cx = r.x + r.w / 2
        for i, line in enumerate(b.lines):
            size, cls = (FONT, "name") if i == 0 else (NOTE_FONT, "note")
            weight = ' font-weight="bold"' if b.bold and i == 0 else ""
            out.append(f'<text class="{cls}" x="{_n(cx)}" y="{_n(y)}" font-size="{_n(size)}" '
                       f'text-anchor="middle"{weight}>{escape(line)}</text>')
            y += NOTE_FONT * 1.3
        if b.passes:
            out += _band(b.passes, r)
        out.append("</g>")
    return out


def _band(passes: str, r: Rect) -> list[str]:
    """The axes a box broadcasts over, written on a band along its bottom edge with a wire
    passing through it: they go by the op untouched (Neural Circuit Diagrams)."""
    top, mid, cx = r.y + r.h - BAND_H, r.y + r.h - BAND_H / 2, r.x + r.w / 2
    half = text_width(passes, PASS_FONT) / 2
    return [f'<rect class="band" x="{_n(r.x + 1)}" y="{_n(top)}" width="{_n(r.w - 2)}" height="{_n(BAND_H - 1)}"/>',
            f'<path class="through" d="M{_n(r.x)} {_n(mid)}H{_n(cx - half - 3)}M{_n(cx + half + 3)} {_n(mid)}'
            f'H{_n(r.x + r.w)}"/>',
            f'<text class="pass" x="{_n(cx)}" y="{_n(mid + PASS_FONT * 0.35)}" font-size="{_n(PASS_FONT)}" '
            f'text-anchor="middle">{escape(passes)}</text>']


def to_svg(d: Diagram, lay: Layout) -> str:
    """The whole SVG document."""
    w, h = _n(lay.width), _n(lay.height)
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
            f"<title>{escape(d.name)}</title>",
            f"<style>{STYLE}</style>",
            '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0 0L8 4L0 8z" fill="#5c6b80"/></marker></defs>',
            f'<rect width="{w}" height="{h}" fill="#ffffff"/>']
    return "\n".join(head + _fences(d, lay) + _wires(lay) + _boxes(d, lay) + ["</svg>"]) + "\n"
