"""The diagrams in a real browser: GPT-2's SVG and HTML opened in headless Chromium (the
Debian package `chromium`; .ci/run installs it), driven over the DevTools protocol
(headless_chromium.py, standard library only).

Each page must load with no error of any kind reported (uncaught exceptions, console.error,
error log entries, failed loads) and ask for nothing but its own file; the drawing must come
out at a sensible size (the SVG file at its own size, the HTML page fitted to the window's
width with the drawing's proportions); the `× 12` of GPT-2's repeated layer must be painted
on the first screen, not covered by anything (hit-testing its centre finds it; its pixels in a
screenshot are the badge's red). Screenshots are kept under the test's tmp_path. On the HTML
page the script is exercised with real input events: clicking a block's title swaps in the
smaller drawing with that block closed, clicking the closed block's box brings the open one
back, typing "softmax" in the search box (the attention closed) finds one match, outlines it
and reopens its block.

Without Chromium the tests are skipped, saying so.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from headless_chromium import Browser, find_chromium, png_pixels
from test_render import render

WIDTH, HEIGHT = 1280, 800
BADGE_RED = (0xB3, 0x26, 0x1E)  # .badge in svg.py's style
HIT_ORANGE = "rgb(232, 89, 12)"  # .hit in diagram_html.py's style


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = find_chromium()
    if exe is None:
        pytest.skip("headless Chromium not found: install the Debian package `chromium` (.ci/run does)")
    b = Browser(exe, tmp_path_factory.mktemp("chromium-profile"), WIDTH, HEIGHT)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser):
    opened = []

    def open_(path: Path):
        p = browser.open(path.resolve().as_uri())
        opened.append(p)
        return p
    yield open_
    for p in opened:
        p.close()


def check_clean(p) -> None:
    assert p.errors() == [], "the page reported errors:\n" + "\n".join(p.errors())
    assert p.evaluate("document.querySelector('parsererror') === null"), "the browser could not parse the file"
    assert set(p.requests()) <= {p.url}, f"the page asked for more than its own file: {p.requests()}"


def close_to(px, colour, tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, colour))


BADGE_JS = """(() => {
  const all = Array.from(document.querySelectorAll("text")).filter(t => t.textContent.trim() === "× 12");
  if (all.length !== 1) { return {count: all.length}; }
  const r = all[0].getBoundingClientRect(), cx = r.x + r.width / 2, cy = r.y + r.height / 2;
  const hit = document.elementFromPoint(cx, cy);
  return {count: 1, x: r.x, y: r.y, w: r.width, h: r.height, vw: innerWidth, vh: innerHeight,
          top: document.getElementById("bar") ? document.getElementById("bar").getBoundingClientRect().bottom : 0,
          found: hit === all[0] || all[0].contains(hit)};
})()"""


def check_badge_on_screen(p, tmp_path: Path, name: str) -> None:
    """`× 12` drawn once, on the first screen without scrolling, below the page's bar, not
    covered, readable, and painted: the badge's red in a screenshot of its spot. The whole
    first screen is saved and must not be blank."""
    shot = p.screenshot()
    (tmp_path / f"{name}.png").write_bytes(shot)
    w, h, small = png_pixels(p.screenshot(scale=0.125))  # small: read in pure Python
    assert (w, h) == (WIDTH // 8, HEIGHT // 8) and len(set(small)) > 8, "a blank screenshot"
    b = p.evaluate(BADGE_JS)
    assert b["count"] == 1, f"`× 12` drawn {b['count']} times"
    assert 0 <= b["x"] and b["x"] + b["w"] <= b["vw"] and b["top"] <= b["y"] and b["y"] + b["h"] <= b["vh"], \
        f"`× 12` not on the first screen: {b}"
    assert b["found"], f"`× 12` is covered by something else: {b}"
    assert 8 <= b["h"] <= 40 and b["w"] >= 15, f"`× 12` is not readable at this size: {b}"
    _, _, px = png_pixels(p.screenshot({"x": b["x"], "y": b["y"], "width": b["w"], "height": b["h"]}))
    assert sum(close_to(c, BADGE_RED) for c in px) >= 10, "`× 12` is not painted where it is laid out"


def test_svg_in_chromium(archc_inprocess, tmp_path, page):
    render(archc_inprocess, tmp_path, "gpt2")
    p = page(tmp_path / "gpt2.svg")
    check_clean(p)
    size = p.evaluate("""(() => { const s = document.documentElement, r = s.getBoundingClientRect();
        return {tag: s.tagName, w: r.width, h: r.height, aw: +s.getAttribute("width"), ah: +s.getAttribute("height")}; })()""")
    assert size["tag"] == "svg"
    assert abs(size["w"] - size["aw"]) < 1 and abs(size["h"] - size["ah"]) < 1, size  # its own size
    assert 300 <= size["w"] <= WIDTH and 150 <= size["h"] <= HEIGHT, f"not a sensible size: {size}"
    check_badge_on_screen(p, tmp_path, "gpt2-svg")
    check_clean(p)


SIZE_JS = """(() => { const s = document.querySelector("#diagram svg"), r = s.getBoundingClientRect(),
    vb = s.viewBox.baseVal;
    return {w: r.width, h: r.height, vbw: vb.width, vbh: vb.height, vw: innerWidth,
            scroll: document.documentElement.scrollWidth}; })()"""


@pytest.mark.parametrize("depth", [None, "2"])
def test_html_in_chromium(archc_inprocess, tmp_path, page, depth):
    render(archc_inprocess, tmp_path, "gpt2", *(["--depth", depth] if depth else []), ext="html")
    p = page(tmp_path / "gpt2.html")
    check_clean(p)
    assert p.evaluate("document.title").startswith("GPT2")
    s = p.evaluate(SIZE_JS)  # fitted: the window's width, the drawing's proportions, no sideways scroll
    assert abs(s["w"] - s["vw"]) < 1 and s["scroll"] <= s["vw"], s
    assert abs(s["h"] / s["w"] - s["vbh"] / s["vbw"]) < 0.01, s
    assert 150 <= s["h"] <= 4 * HEIGHT, f"not a sensible size: {s}"
    check_badge_on_screen(p, tmp_path, f"gpt2-html-depth{depth or 1}")
    # `fit` switches to the drawing's own size
    p.evaluate('document.getElementById("fit").click()')
    s = p.evaluate(SIZE_JS)
    assert abs(s["w"] - s["vbw"]) < 1 and abs(s["h"] - s["vbh"]) < 1, s
    check_clean(p)


SHOWN_JS = """(id => { const e = document.getElementById(id), r = e.getBoundingClientRect();
    return getComputedStyle(e).display !== "none" && r.width > 0 && r.height > 0; })"""


def test_html_script_in_chromium(archc_inprocess, tmp_path, page):
    render(archc_inprocess, tmp_path, "gpt2", "--depth", "2", ext="html")
    p = page(tmp_path / "gpt2.html")
    ids = p.evaluate("""(() => { const boxes = Array.from(document.querySelectorAll("g.box"));
        const soft = boxes.filter(g => g.querySelector("text").textContent === "softmax");
        const fence = Array.from(document.querySelectorAll("g.group")).find(g => g.id.startsWith("h.0.attn"));
        return {softmax: soft.map(g => g.id), fence: fence && fence.id,
                input: boxes.find(g => g.classList.contains("input")).id}; })()""")
    assert len(ids["softmax"]) == 1 and ids["fence"], ids
    softmax, fence = ids["softmax"][0], ids["fence"]
    shown = lambda i: p.evaluate(f"({SHOWN_JS})({i!r})")
    assert shown(softmax) and shown(ids["input"])

    # a real click on the attention block's title: the drawing with the attention closed
    height = lambda: p.evaluate('document.querySelector("#diagram svg").viewBox.baseVal.height')
    open_height = height()

    def close_attention():
        title = p.evaluate(f"""(() => {{ const t = document.getElementById({fence!r}).querySelector("text.title");
            t.scrollIntoView({{block: "center"}}); const r = t.getBoundingClientRect();
            return {{x: r.x + r.width / 2, y: r.y + r.height / 2, text: t.textContent}}; }})()""")
        assert title["text"].startswith("Attention")
        p.click(title["x"], title["y"])
        assert p.evaluate(f"document.getElementById({softmax!r}) === null") and shown(ids["input"])
        assert height() < open_height - 200, (height(), open_height)
        return p.evaluate("""(() => { const b = Array.from(document.querySelectorAll("#diagram g.box.reopen"));
            if (b.length !== 1) { return {count: b.length}; }
            b[0].scrollIntoView({block: "center"}); const r = b[0].getBoundingClientRect();
            return {count: 1, x: r.x + r.width / 2, y: r.y + r.height / 2,
                    text: b[0].querySelector("text").textContent}; })()""")
    box = close_attention()
    assert box["count"] == 1 and box["text"] == "Attention", box
    (tmp_path / "gpt2-attn-closed.png").write_bytes(p.screenshot())
    p.click(box["x"], box["y"])  # its box opens it again
    assert shown(softmax) and shown(fence) and abs(height() - open_height) < 1
    close_attention()

    # typing in the search box: one match, outlined, its block reopened, the other boxes dimmed
    box = p.evaluate("""(() => { const s = document.getElementById("search"); s.scrollIntoView();
        const r = s.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()""")
    p.click(box["x"], box["y"])
    assert p.evaluate("document.activeElement.id") == "search"
    p.call("Input.insertText", text="softmax")
    assert p.evaluate('document.getElementById("search").value') == "softmax"
    assert p.evaluate('document.getElementById("hits").textContent') == "1 match"
    assert p.evaluate('Array.from(document.querySelectorAll("#diagram .hit")).map(e => e.id)') == [softmax]
    assert p.evaluate(f"getComputedStyle(document.getElementById({softmax!r}).querySelector('rect')).stroke") == HIT_ORANGE
    assert shown(softmax) and shown(fence) and abs(height() - open_height) < 1
    assert p.evaluate("document.querySelectorAll('#diagram g.box.dim').length") == \
        p.evaluate("document.querySelectorAll('#diagram g.box').length") - 1
    (tmp_path / "gpt2-search-softmax.png").write_bytes(p.screenshot())
    check_clean(p)


def test_html_opens_a_closed_block_in_chromium(archc_inprocess, tmp_path, page):
    """The U-Net at --depth 0: clicking enc2's box shows the drawing with enc2 open (its two
    convolutions and ReLUs inside a fence); clicking that fence's title closes it again."""
    render(archc_inprocess, tmp_path, "unet", "--depth", "0", ext="html")
    p = page(tmp_path / "unet.html")
    check_clean(p)
    state = """(() => { const s = document.querySelector("#diagram svg");
        return {h: s.viewBox.baseVal.height, fences: Array.from(s.querySelectorAll("g.group")).map(g => g.id),
                inside: Array.from(s.querySelectorAll("g.box")).filter(b => b.getAttribute("data-group") === "enc2#0")
                    .map(b => b.querySelector("text").textContent)}; })()"""
    before = p.evaluate(state)
    assert before["fences"] == [] and before["inside"] == [], before
    box = p.evaluate("""(() => { const b = Array.from(document.querySelectorAll("#diagram g.box.reopen"))
        .find(g => Array.from(g.querySelectorAll("text")).some(t => t.textContent === "enc2"));
        b.scrollIntoView({block: "center"}); const r = b.getBoundingClientRect();
        return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()""")
    p.click(box["x"], box["y"])
    opened = p.evaluate(state)
    assert opened["fences"] == ["enc2#0"] and opened["h"] > before["h"], opened
    assert sorted(opened["inside"]) == ["Conv2d", "Conv2d", "relu", "relu"], opened
    (tmp_path / "unet-enc2-open.png").write_bytes(p.screenshot())
    title = p.evaluate("""(() => { const t = document.querySelector("#diagram g.group text.title");
        t.scrollIntoView({block: "center"}); const r = t.getBoundingClientRect();
        return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()""")
    p.click(title["x"], title["y"])
    assert p.evaluate(state) == before
    check_clean(p)
