"""`archc render`: diagrams in SVG, DOT and Mermaid, checked from what the files hold.

The SVG's geometry is read back with xml.etree: boxes never overlap, every text's
estimated extent (monospace, `text_width`) lies inside its box, every fence holds its boxes
and inner fences, no stretch of wire crosses a box. Long models wrap into rows near 16:10.
Repeats collapse (`× 12`), --depth and --expand change what is drawn.
"""
from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from archlang.backends.diagram_layout import CHAR_W

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NS = {"s": "http://www.w3.org/2000/svg"}


def render(archc_inprocess, tmp_path: Path, example: str, *args: str, ext: str = "svg") -> str:
    out = tmp_path / f"{example}.{ext}"
    r = archc_inprocess("render", EXAMPLES / f"{example}.arch", "-o", out, *args)
    assert r.returncode == 0, r.stderr
    return out.read_text(encoding="utf-8")


def _rect(el) -> tuple[float, float, float, float]:
    return tuple(float(el.get(k)) for k in ("x", "y", "width", "height"))


def _inside(inner, outer, slack: float = 0.01) -> bool:
    x, y, w, h = inner
    X, Y, W, H = outer
    return x >= X - slack and y >= Y - slack and x + w <= X + W + slack and y + h <= Y + H + slack


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def wire_spans(d: str) -> list[tuple[float, float, float, float]]:
    """The bounding box (x0, y0, x1, y1) of each stretch of an SVG path as svg.py writes it
    (M, L, Q and C; a curve lies within the box of its end and control points)."""
    spans, x, y = [], 0.0, 0.0
    for cmd, args in re.findall(r"([MLQC])([^MLQC]*)", d):
        v = [float(t) for t in args.split()]
        if cmd == "M":
            x, y = v
            continue
        xs, ys = [x] + v[0::2], [y] + v[1::2]
        spans.append((min(xs), min(ys), max(xs), max(ys)))
        x, y = v[-2], v[-1]
    return spans


def check_wires(root, rects: list) -> None:
    """No stretch of wire passes through a box (touching its edge, where a wire starts or
    ends, is allowed)."""
    rects = sorted(rects)
    for p in root.iter("{http://www.w3.org/2000/svg}path"):
        if p.get("class") != "wire":
            continue
        for x0, y0, x1, y1 in wire_spans(p.get("d")):
            for (bx, by, bw, bh), bid in rects:
                if bx >= x1:
                    break
                if x0 < bx + bw - 0.5 and bx + 0.5 < x1 and y0 < by + bh - 0.5 and by + 0.5 < y1 or \
                        (y0 == y1 and bx + 0.5 < x1 and x0 < bx + bw - 0.5 and by + 0.5 < y0 < by + bh - 0.5) or \
                        (x0 == x1 and by + 0.5 < y1 and y0 < by + bh - 0.5 and bx + 0.5 < x0 < bx + bw - 0.5):
                    raise AssertionError(f"a wire ({p.find('s:title', NS).text}) crosses box {bid}")


def check_geometry(svg: str) -> dict:
    """Every rule the layout promises, read back from the file; returns the boxes by id."""
    root = ET.fromstring(svg)
    boxes, fences, parents = {}, {}, {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        cls = g.get("class", "").split()
        if "box" in cls:
            rect = _rect(g.find("s:rect", NS))
            boxes[g.get("id")] = (rect, g.get("data-group"), g)
        elif "group" in cls:
            fences[g.get("id")] = _rect(g.find("s:rect[@class='fence']", NS))
            parents[g.get("id")] = g.get("data-parent")
    ids = sorted(boxes)
    rects = sorted((boxes[i][0], i) for i in ids)
    for k, (a, ia) in enumerate(rects):  # sorted by x: compare only with boxes starting before a ends
        for b, ib in rects[k + 1:]:
            if b[0] >= a[0] + a[2]:
                break
            assert not _overlap(a, b), f"boxes {ia} and {ib} overlap"
    check_wires(root, rects)
    for i in ids:
        rect, group, el = boxes[i]
        for t in el.findall("s:text", NS):
            size, x, y = float(t.get("font-size")), float(t.get("x")), float(t.get("y"))
            w = len(t.text) * size * CHAR_W
            left = x - w / 2 if t.get("text-anchor") == "middle" else x
            extent = (left, y - 0.8 * size, w, size)
            assert _inside(extent, rect), f"text {t.text!r} sticks out of box {i}"
        if group:
            assert _inside(rect, fences[group]), f"box {i} outside its fence {group}"
    for gid, parent in parents.items():
        if parent:
            assert _inside(fences[gid], fences[parent]), f"fence {gid} outside {parent}"
    for a in fences:  # sibling fences never overlap
        for b in fences:
            if a < b and parents[a] == parents[b]:
                assert not _overlap(fences[a], fences[b]), f"fences {a} and {b} overlap"
    return {i: boxes[i][2] for i in ids}


def names(boxes: dict) -> list[str]:
    return [el.find("s:text", NS).text for el in boxes.values()]


@pytest.mark.parametrize("example,args", [("gpt2", ()), ("gpt2", ("--depth", "3")), ("unet", ("--depth", "0")),
                                          ("unet", ()), ("rnn", ()), ("albert", ("--depth", "2")),
                                          ("resnet50", ()), ("vit", ("-O2", "--depth", "3"))])
def test_svg_geometry(archc_inprocess, tmp_path, example, args):
    check_geometry(render(archc_inprocess, tmp_path, example, *args))


def test_gpt2_repeat_drawn_once_and_marked(archc_inprocess, tmp_path):
    svg = render(archc_inprocess, tmp_path, "gpt2")
    assert ">× 12</text>" in svg
    assert "h.0 … h.11" in svg
    assert "h.1." not in svg  # copies 1..11 are not drawn
    shared = render(archc_inprocess, tmp_path, "albert")
    assert ">× 12 shared</text>" in shared


def test_depth_and_expand_change_what_is_drawn(archc_inprocess, tmp_path):
    closed = names(check_geometry(render(archc_inprocess, tmp_path, "gpt2", "--depth", "0")))
    assert "Layer" in closed and "softmax" not in closed and "Attention" not in closed
    default = names(check_geometry(render(archc_inprocess, tmp_path, "gpt2")))
    assert "Attention" in default and "softmax" not in default
    deep = names(check_geometry(render(archc_inprocess, tmp_path, "gpt2", "--depth", "2")))
    assert "softmax" in deep and "Attention" not in deep
    expanded = names(check_geometry(render(archc_inprocess, tmp_path, "gpt2", "--expand", "Attention")))
    assert "softmax" in expanded and "MLP" in expanded  # Attention opened, its sibling MLP still closed


def test_parameters_bold_with_tooltip(archc_inprocess, tmp_path):
    svg = render(archc_inprocess, tmp_path, "gpt2", "--depth", "2")
    root = ET.fromstring(svg)
    bold = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "param" in g.get("class", "").split()]
    tips = "\n".join(g.find("s:title", NS).text for g in bold)
    assert "h.0.attn.w_qkv: f32[embed=768, three=3, heads=12, head=64]" in tips
    assert all(g.find("s:text", NS).get("font-weight") == "bold" for g in bold)
    assert ">param<" not in svg and ">rename<" not in svg and ">const<" not in svg


def test_wire_labels_and_no_sizes(archc_inprocess, tmp_path):
    svg = render(archc_inprocess, tmp_path, "gpt2")
    assert ">batch, seq, embed=768</text>" in svg and ">embed→d</text>" in svg
    bare = render(archc_inprocess, tmp_path, "gpt2", "--no-sizes")
    labels = [t.text for t in ET.fromstring(bare).iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "label"]
    assert "batch, seq, embed" in labels and not any("=" in t for t in labels)


def test_inputs_and_outputs_named_as_in_source(archc_inprocess, tmp_path):
    boxes = check_geometry(render(archc_inprocess, tmp_path, "rnn"))
    ins = [b for b in boxes.values() if "input" in b.get("class")]
    outs = [b for b in boxes.values() if "output" in b.get("class")]
    assert [b.find("s:text", NS).text for b in ins] == ["x"]
    assert sorted(b.find("s:text", NS).text for b in outs) == ["h_n", "output"]
    x_in = max(_rect(b.find("s:rect", NS))[0] for b in ins)
    assert all(_rect(b.find("s:rect", NS))[0] > x_in for b in boxes.values() if b not in ins)


def test_fused_ops_at_O2(archc_inprocess, tmp_path):
    drawn = names(check_geometry(render(archc_inprocess, tmp_path, "gpt2", "-O2", "--depth", "2")))
    assert "attention" in drawn and "linear" in drawn and "softmax" not in drawn


def test_deterministic(archc_inprocess, tmp_path):
    for ext in ("svg", "dot", "mmd"):
        first = render(archc_inprocess, tmp_path, "unet", ext=ext)
        assert render(archc_inprocess, tmp_path, "unet", ext=ext) == first


def test_dot_is_dot(archc_inprocess, tmp_path):
    dot = render(archc_inprocess, tmp_path, "gpt2", "--depth", "2", ext="dot")
    assert dot.startswith('digraph "GPT2" {') and dot.count("{") == dot.count("}")
    declared = set(re.findall(r'^\s*"([^"]+)" \[label=', dot, re.M))
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, re.M)
    assert edges and all(a in declared and b in declared for a, b in edges)
    assert 'subgraph "cluster_' in dot and "× 12" in dot


def test_mermaid_is_flowchart(archc_inprocess, tmp_path):
    mmd = render(archc_inprocess, tmp_path, "unet", ext="mmd")
    assert mmd.startswith("flowchart LR\n")
    declared = set(re.findall(r"^\s*(\w+)[\[\(]", mmd, re.M))
    edges = re.findall(r"^\s*(\w+) -->\|[^|]*\| (\w+)$", mmd, re.M)
    assert edges and all(a in declared and b in declared for a, b in edges)
    assert mmd.count("subgraph") == mmd.count("\n  end") + mmd.count("\n    end") + mmd.count("\n      end")


def test_errors(archc_inprocess, tmp_path):
    r = archc_inprocess("render", EXAMPLES / "mlp.arch", "-o", tmp_path / "x.png")
    assert r.returncode == 2 and "archc: error: cannot tell the diagram format" in r.stderr
    assert not (tmp_path / "x.png").exists()
    r = archc_inprocess("render", EXAMPLES / "gpt2.arch", "-o", tmp_path / "x.svg", "--expand", "Nope")
    assert r.returncode == 1 and "--expand Nope" in r.stderr and not (tmp_path / "x.svg").exists()


def test_cli_end_to_end(archc, tmp_path):
    r = archc("render", EXAMPLES / "mlp.arch", "-o", "mlp.svg")
    assert r.returncode == 0, r.stderr
    check_geometry((tmp_path / "mlp.svg").read_text(encoding="utf-8"))


def test_large_graph_lays_out_fast():
    """gpt2 with 48 layers, every block open and every copy drawn: under 2 s (about 0.2 s
    on the project's machine)."""
    from archlang.backends.diagram import build_diagram
    from archlang.backends.diagram_layout import layout
    from archlang.backends.svg import to_svg
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    graph = load_graph(str(EXAMPLES / "gpt2.arch"), SourceCache(), {"layers": "48"})
    start = time.perf_counter()
    d = build_diagram(graph, depth=99, collapse_repeats=False)
    svg = to_svg(d, layout(d))
    elapsed = time.perf_counter() - start
    assert len(d.boxes) > 900 and svg.count('class="group"') == len(d.groups)
    assert elapsed < 2.0, f"{elapsed:.2f} s"


@pytest.mark.parametrize("example,args", [("gpt2", ()), ("gpt2", ("--depth", "2")), ("bert", ()),
                                          ("resnet50", ("--depth", "0")), ("unet", ("--depth", "0"))])
def test_long_models_wrap_into_rows(archc_inprocess, tmp_path, example, args):
    """Each is one strip thousands of px wide; wrapped, the drawing is near 16:10."""
    root = ET.fromstring(render(archc_inprocess, tmp_path, example, *args))
    w, h = float(root.get("width")), float(root.get("height"))
    assert 1.0 <= w / h <= 2.4 and w < 2500, (w, h)


@pytest.mark.parametrize("example,args", [("gpt2", ("--depth", "2")), ("unet", ()), ("bert", ("--depth", "2"))])
def test_wire_labels_do_not_collide(archc_inprocess, tmp_path, example, args):
    """Labels never overlap, also those of one box's several outputs (unstack's q, k, v)."""
    root = ET.fromstring(render(archc_inprocess, tmp_path, example, *args))
    labels = sorted((float(t.get("x")), float(t.get("y")) - 0.8 * float(t.get("font-size")),
                     len(t.text) * float(t.get("font-size")) * CHAR_W, float(t.get("font-size")), t.text)
                    for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "label")
    assert labels
    for k, a in enumerate(labels):
        for b in labels[k + 1:]:
            if b[0] >= a[0] + a[2]:
                break
            assert not _overlap(a[:4], b[:4]), f"labels {a[4]!r} and {b[4]!r} overlap"
    if example == "gpt2":  # unstack's three outputs, each label on a straight stretch of its own
        xs = [x for x, _, _, _, text in labels if text == "batch, seq, heads=12, head=64"]
        qkv = sorted(y for x, y, _, _, text in labels if x == max(xs, key=xs.count))
        assert len(qkv) == 3 and min(b - a for a, b in zip(qkv, qkv[1:])) >= 20
