"""DOT (Graphviz) and Mermaid text of a diagram: the same boxes, wires and fences as the
SVG, left to Graphviz or Mermaid to lay out. Open blocks become clusters / subgraphs."""
from __future__ import annotations

from .diagram import Box, Diagram, Group


def _children(d: Diagram) -> tuple[dict[str, list[Group]], dict[str, list[Box]]]:
    groups: dict[str, list[Group]] = {}
    boxes: dict[str, list[Box]] = {}
    for g in d.groups:
        groups.setdefault(g.parent, []).append(g)
    for b in d.boxes:
        boxes.setdefault(b.group, []).append(b)
    return groups, boxes


def _lines(b: Box) -> list[str]:
    """The box's text, and the axes it broadcasts over as the SVG's band writes them."""
    return b.lines + ([f"— {b.passes} —"] if b.passes else [])


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_box(b: Box) -> str:
    shape = {"input": "oval", "output": "oval", "block": "box3d"}.get(b.kind, "box")
    attrs = [f"label={_q(chr(10).join(_lines(b)))}", f"shape={shape}"]
    if b.bold:
        attrs += ["style=bold", "penwidth=2", 'fontname="monospace bold"']
    tip = "; ".join([b.tooltip] + b.params[:24])
    attrs.append(f"tooltip={_q(tip)}")
    return f"{_q(b.id)} [{', '.join(attrs)}];"


def to_dot(d: Diagram) -> str:
    """`digraph` text; `dot -Tsvg` draws it."""
    groups, boxes = _children(d)
    lines = [f"digraph {_q(d.name)} {{", "  rankdir=LR;", '  node [fontname="monospace", fontsize=11];',
             '  edge [fontname="monospace", fontsize=9];']

    def emit(parent: str, indent: str) -> None:
        for b in boxes.get(parent, []):
            lines.append(indent + _dot_box(b))
        for g in groups.get(parent, []):
            title = _title(g)
            lines.append(f"{indent}subgraph {_q('cluster_' + g.id)} {{")
            lines.append(f"{indent}  label={_q(title)}; style=dashed;")
            emit(g.id, indent + "  ")
            lines.append(f"{indent}}}")
    emit("", "  ")
    for w in d.wires:
        label = _wire_label(w)
        lines.append(f"  {_q(w.src)} -> {_q(w.dst)} [label={_q(label)}, tooltip={_q(w.type)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _title(g) -> str:
    """A block's title with its repeat badge (`× 12`)."""
    return g.title + (f"  {g.badge}" if g.badge else "")


def _wire_label(w) -> str:
    """A wire's axes, and the renames met on the way."""
    return w.label + (f" → {w.dst_label}" if w.dst_label else "")


def _m(text: str) -> str:
    """Mermaid quoted text: quotes become entity codes."""
    return '"' + text.replace('"', "#quot;") + '"'


def _gid(g: str) -> str:
    return "g_" + "".join(ch if ch.isalnum() else "_" for ch in g)


def to_mermaid(d: Diagram) -> str:
    """`flowchart LR` text, which GitHub renders inline in Markdown."""
    groups, boxes = _children(d)
    lines = ["flowchart LR"]

    def emit(parent: str, indent: str) -> None:
        for b in boxes.get(parent, []):
            text = "<br/>".join(_lines(b))
            shape = {"input": ("([", "])"), "output": ("([", "])"), "block": ("[[", "]]")}.get(b.kind, ("[", "]"))
            lines.append(f"{indent}{b.id}{shape[0]}{_m(text)}{shape[1]}")
        for g in groups.get(parent, []):
            title = _title(g)
            lines.append(f"{indent}subgraph {_gid(g.id)} [{_m(title)}]")
            emit(g.id, indent + "  ")
            lines.append(f"{indent}end")
    emit("", "  ")
    for w in d.wires:
        label = _wire_label(w)
        lines.append(f"  {w.src} -->|{_m(label)}| {w.dst}")
    bold = [b.id for b in d.boxes if b.bold]
    if bold:
        lines.append("  classDef param font-weight:bold,stroke-width:2.5px")
        lines.append(f"  class {','.join(bold)} param")
    return "\n".join(lines) + "\n"
