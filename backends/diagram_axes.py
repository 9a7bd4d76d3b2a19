"""What a diagram says about axes: wire labels, the renames met on a wire, and which axes
an op acts on and which it broadcasts over.

Broadcasting is drawn as in Neural Circuit Diagrams: an op's box names the axes it acts on
(`embed → three, heads, head`, `over key`), and the axes it does not act on pass through it,
written on a band along its bottom edge (`batch, seq`). The rule reads only the op's types
and its axis attributes, so it holds for every op of the registry:

- removed: axes of its data inputs (parameters and constants left out) not in its result;
- added: axes of its result in none of its data inputs;
- over: axes it names (`axes`, `axis`, `spatial`) that it keeps;
- passing: axes of its result in every data input that it neither adds nor names.

An elementwise op acts on no axis (everything passes): it gets neither note nor band. A
closed block gets a band too (diagram_blocks): the axes of its wires that none of its ops
acts on under any name the block gives them.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from archlang.compiler.ir import Node, Value

PASS_THROUGH = {"rename", "transpose"}  # relabel or reorder axes: folded into wire labels


def axes_label(value: Value, sizes: bool) -> str:
    """`batch, seq, embed=768`: named axes, static sizes unless `sizes` is off."""
    return _type_label(value.type, sizes)


@lru_cache(maxsize=4096)
def _type_label(t, sizes: bool) -> str:
    parts = [a.name if not sizes or not a.size.is_static else f"{a.name}={a.size}" for a in t.axes]
    text = ", ".join(parts) if parts else "scalar"
    return text if t.dtype in ("f32",) else f"{t.dtype} {text}"


def chain(v: Value) -> list[Value]:
    """`v` and the values it was renamed or transposed from, producer side first."""
    out = [v]
    while out[0].producer is not None and out[0].producer.op in PASS_THROUGH:
        out.insert(0, out[0].producer.inputs[0])
    return out


def renames(values: list[Value]) -> str:
    """`embed→d, seq→key`: what the renames between the first and the last of `values` did."""
    now: dict[str, str] = {}  # original name -> name now
    for v in values[1:]:
        if v.producer.op != "rename":
            continue
        mapping = dict(v.producer.attrs.get("mapping", ()))
        now = {k: mapping.get(x, x) for k, x in now.items()}
        for old, new in mapping.items():
            if old not in now.values():
                now[old] = new
    return ", ".join(f"{a}→{b}" for a, b in now.items() if a != b)


def axis_names(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in axis_names(v)]
    name = getattr(value, "name", None)
    return [name] if isinstance(name, str) else []


def acted_axes(n: Node, data: list[Value]) -> tuple[list[str], list[str], list[str]]:
    """(removed, added, over) of the rule above, for op `n` reading `data`."""
    out = [a.name for a in n.outputs[0].type.axes] if n.outputs else []
    ins: list[str] = []
    for v in data:
        ins += [a.name for a in v.type.axes if a.name not in ins]
    named = {x for k in ("axes", "axis", "spatial") for x in axis_names(n.attrs.get(k))}
    return [a for a in ins if a not in out], [a for a in out if a not in ins], \
        [a for a in ins if a in out and a in named]


def acts_and_passes(n: Node, data: list[Value]) -> tuple[str, str]:
    """(what the op does to axes, the axes passing through it), "" for none; `data` are
    its inputs that are not parameters or constants."""
    data = [v for v in data if v.type.axes]
    if not data or not n.outputs:
        return "", ""
    out = [a.name for a in n.outputs[0].type.axes]
    removed, added, over = acted_axes(n, data)
    if removed and added:
        acts = f"{', '.join(removed)} → {', '.join(added)}" + (f" over {', '.join(over)}" if over else "")
    elif removed or over:
        acts = ("→ " + ", ".join(added) + " " if added else "") + "over " + ", ".join(removed + over)
    elif added:
        acts = "→ " + ", ".join(added)
    else:
        return "", ""
    passing = [a for a in out if a not in added and a not in over
               and all(any(x.name == a for x in v.type.axes) for v in data)]
    return acts, ", ".join(passing)


def scalar(value) -> Optional[str]:
    """A one-element constant as text (`8`, `1e-05`), else None."""
    try:
        import numpy as np
        arr = np.asarray(value)
        if arr.size != 1:
            return None
        x = arr.reshape(()).item()
        return f"{x:g}" if isinstance(x, float) else str(x)
    except Exception:  # an attribute that is not numeric: no note
        return None
