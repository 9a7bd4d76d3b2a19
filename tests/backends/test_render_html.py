"""`archc render -o OUT.html` (one self-contained page: the SVG inline, a script of its own)
and the Python API (`archlang.render`, `archlang.diagram` with `_repr_svg_`).

The page is checked from what the file holds: the SVG inside is the one `-o OUT.svg` writes
(and passes the same geometry checks), the drawings it holds for blocks closed are the ones
`build_diagram(close=...)` lays out (smaller, and passing the geometry checks too), the
script is there and refers to nothing outside the file, every id is unique in the page and
in each drawing it holds, and the same model gives the same bytes. When Node.js is installed
the script is also run against a small stand-in for the DOM, without the held drawings (the
way a state the page does not hold is drawn): closing a fence hides what it holds, and the
search marks matches and reopens the blocks holding them. test_render_browser.py runs the
page in Chromium, held drawings and all.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from test_render import EXAMPLES, check_geometry, render


def _svg_of(html: str) -> str:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return html[start:end]


def _held(html: str) -> dict[str, str]:
    """The page's other drawings: toggles ("|"-joined; -id closed, +key opened) -> SVG."""
    return dict(re.findall(r'<template data-state="([^"]*)">(.*?)</template>', html, re.S))


def test_html_is_one_page_with_the_svg_and_a_script(archc_inprocess, tmp_path):
    html = render(archc_inprocess, tmp_path, "gpt2", "--depth", "2", ext="html")
    svg = render(archc_inprocess, tmp_path, "gpt2", "--depth", "2")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    held = _held(html)
    page = re.sub(r"<template .*?</template>", "", html, flags=re.S)
    assert page.count("<svg") == 1 and _svg_of(page) + "\n" == svg
    check_geometry(_svg_of(page))
    assert ">× 12</text>" in page
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1 and "addEventListener" in scripts[0]
    assert 'id="search"' in html
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|https?://(?!www\.w3\.org/2000/svg)", html)
    for text in [page] + list(held.values()):
        ids = re.findall(r'\bid="([^"]*)"', text)
        assert len(ids) == len(set(ids)) and "arrow" in ids
    assert {"search", "diagram"} <= set(re.findall(r'\bid="([^"]*)"', page))
    # the drawings held: each block closed alone (the outermost first), then together
    assert list(held) == ["-h.0#0", "-h.0.attn#0,0", "-h.0.mlp#0,0", "-h.0.attn#0,0|-h.0.mlp#0,0"]
    height = lambda text: float(ET.fromstring(text).get("height"))
    for state, text in held.items():
        boxes = check_geometry(text)
        assert height(text) < height(svg), state  # closing a block makes the drawing smaller
        keys = {b.get("data-key") for b in boxes.values() if b.get("data-key")}
        assert {t[1:] for t in state.split("|")} <= keys  # each closed block a box that opens it again
    assert height(held["-h.0.attn#0,0|-h.0.mlp#0,0"]) < height(held["-h.0.attn#0,0"])


def test_html_holds_closed_blocks_opened(archc_inprocess, tmp_path):
    """At --depth 0 the U-Net's blocks are boxes; the page holds each opened, laid out anew."""
    html = render(archc_inprocess, tmp_path, "unet", "--depth", "0", ext="html")
    held = _held(html)
    closed = check_geometry(_svg_of(re.sub(r"<template .*?</template>", "", html, flags=re.S)))
    keys = sorted(b.get("data-key") for b in closed.values() if b.get("data-key"))
    assert len(keys) == 11 and all(k in keys for k in ("enc1#0", "bottleneck#0", "up3#0", "head#0"))
    assert {"+" + k for k in keys} <= set(held)  # each alone, then pairs while there is room
    for state, text in held.items():
        boxes = check_geometry(text)
        fences = set(re.findall(r'<g class="group" id="([^"]*)"', text))
        for key in (t[1:] for t in state.split("|")):  # open: a fence, or its one op keyed to close it
            assert key in fences or any(b.get("data-key") == key and "op" in b.get("class") for b in boxes.values())
            assert not any(b.get("data-key") == key and "block" in b.get("class") for b in boxes.values())
    assert len(html) < 600_000


def test_html_deterministic(archc_inprocess, tmp_path):
    first = render(archc_inprocess, tmp_path, "unet", ext="html")
    assert render(archc_inprocess, tmp_path, "unet", ext="html") == first


FAKE_DOM = r"""
// Just enough DOM for the page's script: elements from the SVG's <g>, <text> and <path>.
const data = JSON.parse(require("fs").readFileSync(0, "utf8"));
function el(tag, attrs, kids) {
  const e = {tagName: tag, attrs: Object.assign({}, attrs), kids: kids || [], style: {}, listeners: {},
             textContent: attrs._text || "", parentNode: null};
  e.kids.forEach(k => { k.parentNode = e; });
  e.id = e.attrs.id || "";
  e.getAttribute = n => (n in e.attrs ? e.attrs[n] : null);
  e.setAttribute = (n, v) => { e.attrs[n] = v; };
  const cls = () => (e.attrs.class || "").split(" ").filter(Boolean);
  e.classList = {contains: c => cls().includes(c),
                 toggle: (c, on) => { const s = new Set(cls()); if (on === undefined) on = !s.has(c);
                                      if (on) s.add(c); else s.delete(c); e.attrs.class = [...s].join(" "); }};
  e.addEventListener = (t, f) => { e.listeners[t] = f; };
  const all = () => e.kids.flatMap(k => [k, ...k._all()]);
  e._all = all;
  const match = (k, sel) => {
    if (sel === "[data-group]") return "data-group" in k.attrs;
    const [tag, c] = sel.split(".");
    return (!tag || k.tagName === tag) && (!c || k.classList.contains(c));
  };
  e.querySelectorAll = sel => { const parts = sel.split(",").map(s => s.trim());
    return all().filter(k => parts.some(p => match(k, p))); };
  e.querySelector = sel => e.querySelectorAll(sel)[0] || null;
  return e;
}
const svg = el("svg", {}, data.items.map(it => el(it.tag, it.attrs, it.kids.map(k => el(k.tag, k.attrs)))));
const root = el("div", {id: "diagram", class: "fit"}, [svg]);
const byId = {diagram: root, search: el("input", {id: "search"}), hits: el("span", {id: "hits"}),
              fit: el("button", {id: "fit"})};
global.document = {getElementById: id => byId[id], querySelectorAll: () => []};  // no held drawings
eval(data.script);
const shown = id => svg._all().find(k => k.id === id).style.display !== "none";
const out = {before: data.probe.map(shown)};
const title = svg._all().find(k => k.id === data.fence).querySelector("text.title");
title.listeners.click();
out.closed = data.probe.map(shown);
out.title = title.textContent;
byId.search.value = data.query;
byId.search.listeners.input();
out.reopened = data.probe.map(shown);
out.hits = byId.hits.textContent;
out.hit = svg._all().filter(k => k.classList.contains("hit")).map(k => k.id);
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: the page's script is not run")
def test_html_script_closes_blocks_and_searches(archc_inprocess, tmp_path):
    html = render(archc_inprocess, tmp_path, "gpt2", "--depth", "2", ext="html")
    root = ET.fromstring(_svg_of(html))
    ns = "{http://www.w3.org/2000/svg}"
    items = []
    for e in root:
        if e.tag in (ns + "g", ns + "path", ns + "text"):
            kids = [{"tag": k.tag.replace(ns, ""), "attrs": {**k.attrib, "_text": k.text or ""}} for k in e]
            items.append({"tag": e.tag.replace(ns, ""), "attrs": {**e.attrib, "_text": e.text or ""}, "kids": kids})
    fences = {e.get("id"): e for e in root.iter(ns + "g") if "group" in e.get("class", "").split()}
    attn = next(i for i in fences if i.startswith("h.0.attn"))
    softmax = next(e.get("id") for e in root.iter(ns + "g")
                   if "box" in e.get("class", "") and e.find(ns + "text").text == "softmax")
    outside = next(e.get("id") for e in root.iter(ns + "g") if e.get("id") == "in0")
    data = {"items": items, "script": re.search(r"<script>(.*?)</script>", html, re.S).group(1),
            "fence": attn, "probe": [softmax, outside], "query": "softmax"}
    r = subprocess.run(["node", "-e", FAKE_DOM], input=json.dumps(data), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["before"] == [True, True]
    assert out["closed"] == [False, True] and out["title"].startswith("\u25b8 Attention")
    assert out["reopened"] == [True, True] and out["hit"] == [softmax] and out["hits"] == "1 match"


def test_python_render_and_diagram(tmp_path):
    import archlang
    archlang.render(EXAMPLES / "gpt2.arch", tmp_path / "g.svg", depth=2)
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    check_geometry(svg)
    d = archlang.diagram(str(EXAMPLES / "gpt2.arch"), depth=2)
    assert d._repr_svg_() == svg and "GPT2" in repr(d)
    archlang.render(d.graph, tmp_path / "g.html", depth=2)  # a graph works as well as a path
    assert _svg_of((tmp_path / "g.html").read_text(encoding="utf-8")) + "\n" == svg
    small = archlang.diagram(EXAMPLES / "gpt2.arch", sets={"layers": 2}, depth=0, sizes=False, level=2)
    assert "h.0 … h.1  × 2" in small.svg and "=" not in "".join(re.findall(r'class="label"[^>]*>([^<]*)<', small.svg))
    with pytest.raises(ValueError, match="cannot tell the diagram format"):
        archlang.render(EXAMPLES / "mlp.arch", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_import_archlang_is_cheap():
    r = subprocess.run([sys.executable, "-c", "import sys, archlang; print(sorted(m for m in sys.modules if 'archlang.' in m))"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
