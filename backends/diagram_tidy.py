"""Last touches to a built diagram, for reading: what a bold box reads, and no fence around
a lone op.

- an op reading learned parameters gets their short names as a note (`w_qkv`, `wte`): the
  names the source gives them say what the op is (the projection, the embedding), unless
  they are generic (`weight`, `bias`);
- an open block holding a single op and nothing else (a `LayerNorm` around `layernorm`) is
  drawn as that op's box, its block and instance as a note, without a fence: a fence around
  one box only takes room. The box keeps the block's id as its `key`. A repeated block and a
  scan body keep their fence (`× N`, the loop).
"""
from __future__ import annotations

from .diagram import Diagram

MAX_PARAM_NOTE = 2  # more parameters than this: the tooltip lists them, no note
GENERIC = {"weight", "bias", "gamma", "beta", "scale", "w", "b"}  # names that say no more than the op


def tidy(d: Diagram) -> Diagram:
    """`d`, with the notes and fences above changed in place."""
    for b in d.boxes:
        short = [p.split(":")[0].rsplit(".", 1)[-1] for p in b.params]
        short = [name for name in short if name not in GENERIC]
        if b.kind == "op" and 0 < len(short) <= MAX_PARAM_NOTE:
            b.lines.insert(1, ", ".join(short))
    inner = {g.parent for g in d.groups}
    held: dict[str, list] = {}
    for b in d.boxes:
        held.setdefault(b.group, []).append(b)
    lone = {g.id: g for g in d.groups if g.id not in inner and len(held.get(g.id, [])) == 1
            and g.repeat <= 1 and not g.loop}
    for gid, g in lone.items():
        box = held[gid][0]
        box.group = g.parent
        instance = g.path.rsplit(".", 1)[-1]
        box.lines.append(f"{g.block} {instance}" if instance != g.block else g.path)
        box.tooltip += f"\nblock {g.block} {g.path}"
        box.key = g.id  # the HTML page closes the block again from its box
    d.groups = [g for g in d.groups if g.id not in lone]
    return d
