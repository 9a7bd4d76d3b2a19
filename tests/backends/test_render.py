"""`archc render`: diagrams in SVG, DOT and Mermaid, checked from what the files hold.

The SVG's geometry is read back with xml.etree: boxes never overlap, every text's
estimated extent (monospace, `text_width`) lies inside its box, every fence holds its boxes
and inner fences, no stretch of wire crosses a box, no wire label lies over a box. Long
models wrap into rows near 16:10. Repeats collapse (`× 12`), --depth and --expand change
what is drawn. The U-Net is drawn as a U, from its graph; broadcasting shows on the boxes
and closed blocks; scan bodies open like blocks.
"""
from __future__ import annotations

import re
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


def check_labels_clear_of_boxes(root, rects: list) -> None:
    """No wire label (its estimated extent, monospace) lies over a box."""
    band = 100.0
    bands: dict[int, list] = {}
    for r, bid in rects:
        for k in range(int(r[1] // band), int((r[1] + r[3]) // band) + 1):
            bands.setdefault(k, []).append((r, bid))
    for t in root.iter("{http://www.w3.org/2000/svg}text"):
        if t.get("class") != "label":
            continue
        size = float(t.get("font-size"))
        ext = (float(t.get("x")), float(t.get("y")) - 0.8 * size, len(t.text) * size * CHAR_W, size)
        for k in range(int(ext[1] // band), int((ext[1] + ext[3]) // band) + 1):
            for r, bid in bands.get(k, []):
                assert not _overlap(ext, r), f"label {t.text!r} lies over box {bid}"


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
    check_labels_clear_of_boxes(root, rects)
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


def test_large_graph_every_block_open_and_every_copy_drawn():
    """gpt2 with 48 layers, every block open and every copy drawn, passes the geometry checks
    (a fence for each Layer, its Attention and its MLP; the LayerNorms are lone ops). Its
    speed is benchmarks/diagram.py's, at 5,000 nodes: tests time nothing."""
    from archlang.backends.render import render_text
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    graph = load_graph(str(EXAMPLES / "gpt2.arch"), SourceCache(), {"layers": "48"})
    svg = render_text(graph, "svg", depth=99, collapse_repeats=False)
    boxes = check_geometry(svg)
    assert len(boxes) > 900 and svg.count('class="group"') == 48 * 3 and "×" not in svg


@pytest.mark.parametrize("example,args", [("gpt2", ()), ("gpt2", ("--depth", "2")), ("bert", ()),
                                          ("resnet50", ("--depth", "0"))])
def test_long_models_wrap_into_rows(archc_inprocess, tmp_path, example, args):
    """Each is one strip thousands of px wide; wrapped, the drawing is near 16:10."""
    root = ET.fromstring(render(archc_inprocess, tmp_path, example, *args))
    w, h = float(root.get("width")), float(root.get("height"))
    assert 1.0 <= w / h <= 2.4 and w < 2500, (w, h)


@pytest.mark.parametrize("example,args", [("gpt2", ("--depth", "2")), ("unet", ()), ("unet", ("--depth", "0")),
                                          ("bert", ("--depth", "2")), ("rnn", ())])
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


def _centre(boxes: dict, bid: str) -> tuple[float, float]:
    x, y, w, h = _rect(boxes[bid].find("s:rect", NS))
    return x + w / 2, y + h / 2


def _by_note(boxes: dict) -> dict:
    """Closed blocks by instance (their second line), ops by name: id of the first of each."""
    out = {}
    for i, el in boxes.items():
        texts = [t.text for t in el.findall("s:text", NS)]
        out.setdefault(texts[1] if "block" in el.get("class") else texts[0], i)
    return out


@pytest.mark.parametrize("example", ["unet", "unet_renamed"])
def test_unet_is_drawn_as_a_u(archc_inprocess, tmp_path, example):
    """Encoder rows step down, the bottleneck is lowest, the decoder steps back up to the
    right, each skip's two ends on one row (the bridge across the U); found from the graph,
    so renaming every instance changes nothing."""
    if example == "unet_renamed":
        text = (EXAMPLES / "unet.arch").read_text(encoding="utf-8")
        for old, new in [("enc", "down"), ("dec", "up_"), ("bottleneck", "middle"), ("UNet", "Net")]:
            text = text.replace(old, new)
        (tmp_path / "unet_renamed.arch").write_text(text, encoding="utf-8")
        out = tmp_path / "u.svg"
        r = archc_inprocess("render", tmp_path / "unet_renamed.arch", "-o", out, "--depth", "0")
        assert r.returncode == 0, r.stderr
        svg, enc, dec, mid = out.read_text(encoding="utf-8"), "down", "up_", "middle"
    else:
        svg, enc, dec, mid = render(archc_inprocess, tmp_path, "unet", "--depth", "0"), "enc", "dec", "bottleneck"
    boxes = check_geometry(svg)
    at = {k: _centre(boxes, i) for k, i in _by_note(boxes).items()}
    ys = [at[f"{enc}{k}"][1] for k in (1, 2, 3)] + [at[mid][1]]
    assert ys == sorted(ys) and len(set(ys)) == 4, ys  # down the left arm to the bottom
    for k in (1, 2, 3):
        assert at[f"{dec}{k}"][1] == at[f"{enc}{k}"][1]  # the same row as its skip's source
        assert at[f"{dec}{k}"][0] > at[mid][0] > at[f"{enc}{k}"][0]
    concats = sorted((c for i, c in ((i, _centre(boxes, i)) for i in boxes)
                      if boxes[i].find("s:text", NS).text == "concat"), key=lambda c: c[1])
    assert len(concats) == 3 and all(abs(c[1] - at[f"{dec}{k}"][1]) < 12 for c, k in zip(concats, (1, 2, 3)))
    root = ET.fromstring(svg)
    w, h = float(root.get("width")), float(root.get("height"))
    assert h > 300 and w < 2500, (w, h)


@pytest.mark.parametrize("example,depth", [("gpt2", 99), ("resnet50", 1), ("vit", 99), ("unet", 1)])
def test_only_nested_skips_make_a_u(example, depth):
    """Residuals follow one another and never nest: no level of a transformer or a ResNet is
    a U; of the U-Net (blocks open), only the model's own level is."""
    from archlang.backends.diagram import build_diagram
    from archlang.backends.diagram_layout import _Layouter
    from archlang.backends.diagram_ushape import u_rows
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    lay = _Layouter(build_diagram(load_graph(str(EXAMPLES / f"{example}.arch"), SourceCache(), {}), depth))
    lay.frame("", None)
    shaped = sorted(g for g, o in lay.orders.items() if u_rows(o, lay.box))
    assert shaped == ([""] if example == "unet" else [])


def _texts(el, cls: str) -> list[str]:
    return [t.text for t in el.findall("s:text", NS) if t.get("class") == cls]


def test_broadcast_axes_pass_through_boxes(archc_inprocess, tmp_path):
    """Each op names the axes it acts on; those it broadcasts over are written on a band
    through its bottom edge; an elementwise op has neither."""
    boxes = check_geometry(render(archc_inprocess, tmp_path, "gpt2", "--depth", "2"))
    seen = {}
    for el in boxes.values():
        name = el.find("s:text", NS).text
        seen.setdefault(name, []).append((_texts(el, "note"), _texts(el, "pass")))
    assert (["over d", "LayerNorm ln_1"], ["batch, seq"]) in seen["layernorm"]
    assert (["w_qkv", "embed → three, heads, head"], ["batch, seq"]) in seen["contract"]
    assert (["over key"], ["batch, seq, heads"]) in seen["softmax"]
    assert (["over head"], ["batch, heads"]) in seen["contract"]  # q · k: batch and heads pass
    assert seen["gelu_tanh"] == [([], [])]
    unet = check_geometry(render(archc_inprocess, tmp_path, "unet", "--depth", "0"))
    pools = [(_texts(el, "note"), _texts(el, "pass")) for el in unet.values()
             if el.find("s:text", NS).text == "maxpool"]
    assert (["height, width → h2, w2"], ["batch, c1"]) in pools
    blocks = {el.find("s:text", NS).text: _texts(el, "pass") for el in unet.values() if "block" in el.get("class")}
    assert blocks["ConvBlock"] == ["batch"]  # its convolutions act on channels and both spatial axes


def test_closed_blocks_show_what_they_broadcast_over(archc_inprocess, tmp_path):
    """A closed block passes the axes none of its ops acts on, under any name it gives them:
    GPT-2's MLP passes batch and seq, its attention only batch (seq becomes key inside, and
    softmax acts on key); a scan acts on the axis it steps along."""
    boxes = check_geometry(render(archc_inprocess, tmp_path, "gpt2"))
    bands = {el.find("s:text", NS).text: _texts(el, "pass") for el in boxes.values() if "block" in el.get("class")}
    assert bands == {"LayerNorm": ["batch, seq"], "Attention": ["batch"], "MLP": ["batch, seq"]}
    rnn = check_geometry(render(archc_inprocess, tmp_path, "rnn", "--depth", "0"))
    assert [_texts(el, "pass") for el in rnn.values() if "block" in el.get("class")] == [["batch"], ["batch"]]


def test_closed_blocks_wired_in_the_callers_names(archc_inprocess, tmp_path):
    """A closed block's own axis names (ConvBlock's cin, cout, h, w) stay inside it."""
    root = ET.fromstring(render(archc_inprocess, tmp_path, "unet", "--depth", "0"))
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class") == "label"]
    assert "batch, c1=8, height=64, width=64" in labels and "batch, u3=32, h4=16, w4=16" in labels
    assert not any(re.search(r"\b(cin|cout|oh|ow)\b", t) for t in labels), labels


def test_scan_body_opens_like_a_block(archc_inprocess, tmp_path):
    """rnn.arch's two scans: open at the default depth (a fence each, the loop as badge),
    closed at --depth 0 (a box each), one opened with --expand."""
    svg = render(archc_inprocess, tmp_path, "rnn")
    boxes = check_geometry(svg)
    assert "GRUCell · scan seq</text>" in svg and "GRUCell · scan reverse seq</text>" in svg
    assert ">for each seq ↻ h</text>" in svg and ">for each seq, last first ↻ h</text>" in svg
    assert names(boxes).count("sigmoid") == 4 and "scan" not in " ".join(names(boxes))
    closed_svg = render(archc_inprocess, tmp_path, "rnn", "--depth", "0")
    closed = check_geometry(closed_svg)
    notes = sorted(_texts(el, "note")[0] for el in closed.values() if "block" in el.get("class"))
    assert notes == ["scan reverse seq", "scan seq"] and "sigmoid" not in names(closed)
    labels = [t.text for t in ET.fromstring(closed_svg).iter("{http://www.w3.org/2000/svg}text")
              if t.get("class") == "label"]  # each closed scan's two results: stacked, and the last state
    assert labels.count("seq, batch, hidden=32") == 2 and labels.count("batch, hidden=32") >= 2
    one = check_geometry(render(archc_inprocess, tmp_path, "rnn", "--depth", "0", "--expand", "scan reverse seq"))
    assert names(one).count("sigmoid") == 2
