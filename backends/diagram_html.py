"""The diagram as one self-contained HTML page: the SVG inline and a small script of its own
(no external file, no network). On the page:

- click a fence's title to close the block, a closed block's box to open it: the page holds
  the drawing laid out anew for each such toggle of the drawing asked for (a `<template>`
  per state: each toggle alone, then pairs, ... within render.py's MAX_STATES, MAX_BOXES and
  MAX_HELD_BYTES), so closing a block gives a compact drawing, not a hole, and opening one
  shows what it holds; a state the page does not hold is drawn from the nearest one it does,
  the blocks closed beyond it folded in place (what a closed fence holds hidden, the fence
  kept and tinted, its title marked ▸);
- hover a wire for its full type, a box for its op, source position and parameters (the
  SVG's own `<title>`s);
- type in the search box: boxes and blocks whose name, op, path or tooltip contains the text
  are outlined, the rest dimmed, and closed blocks holding a match are opened;
- `fit` switches between the page's width and the drawing's own size.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from .diagram import Diagram
from .diagram_layout import Layout
from .svg import to_svg, xml_attr

PAGE_STYLE = """
body { margin: 0; font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; background: #fff; color: #222; }
#bar { position: sticky; top: 0; z-index: 1; display: flex; gap: 12px; align-items: center; padding: 8px 16px;
       background: #f3f5fa; border-bottom: 1px solid #d5dbe8; font-size: 14px; }
#bar input { font: inherit; padding: 3px 6px; width: 18em; }
#bar button { font: inherit; }
#hits, #help { color: #56607a; font-size: 12px; }
#diagram { overflow: auto; }
#diagram.fit svg { width: 100%; height: auto; }
#diagram .group > text.title, #diagram g.box.reopen { cursor: pointer; }
#diagram g.box.reopen > rect { stroke-dasharray: 5 2; }
#diagram .group.closed > rect.fence { fill: #fff6dd; stroke: #a8842c; }
#diagram .hit > rect, #diagram .group.hit > rect.fence { stroke: #e8590c; stroke-width: 3; }
#diagram .dim { opacity: 0.25; }
#diagram path.wire:hover { stroke: #e8590c; stroke-width: 2.4; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var root = document.getElementById("diagram");
  var full = root.querySelector("svg"), svg = full, current = "";
  var parent = {}, closed = {}, opened = {}, variants = {}, drawings = {"": full};
  function each(list, f) { Array.prototype.forEach.call(list, f); }
  function learn(s) {  // the fences of a drawing: who holds whom
    each(s.querySelectorAll("g.group"), function (g) { parent[g.id] = g.getAttribute("data-parent"); });
  }
  learn(full);
  each(document.querySelectorAll("template[data-state]"), function (t) {
    variants[t.getAttribute("data-state")] = t;
  });
  function within(gid, anc) {  // gid is anc or lies inside it
    for (; gid; gid = parent[gid]) { if (gid === anc) { return true; } }
    return false;
  }
  function wanted() {  // the state asked for, as toggles: -id closed (outermost only), +key opened
    var out = [];
    Object.keys(closed).forEach(function (id) {
      for (var p = parent[id]; p; p = parent[p]) { if (p in closed) { return; } }
      out.push("-" + id);
    });
    Object.keys(opened).forEach(function (k) { out.push("+" + k); });
    return out.sort();
  }
  var last = "";  // the latest toggle: the drawing shown has it if the page holds one that does
  function pick(toggles) {  // the drawing the page holds with the most of `toggles`, no others
    var best = "", n = 0, latest = false;
    Object.keys(variants).forEach(function (k) {
      var ks = k.split("|"), has = ks.indexOf(last) >= 0;
      if (!ks.every(function (x) { return toggles.indexOf(x) >= 0; })) { return; }
      if ((has && !latest) || (has === latest && ks.length > n)) { best = k; n = ks.length; latest = has; }
    });
    return best;
  }
  function bind(s) {  // once per drawing: titles and closed boxes answer clicks
    each(s.querySelectorAll("g.group"), function (g) {
      var title = g.querySelector("text.title");
      title.setAttribute("data-text", title.textContent);
      title.addEventListener("click", function () {
        if (g.id in opened) { delete opened[g.id]; last = ""; } else { closed[g.id] = true; last = "-" + g.id; }
        draw();
      });
    });
    each(s.querySelectorAll("g.box[data-key]"), function (b) {
      b.addEventListener("click", function () {
        var k = b.getAttribute("data-key");
        if (k in closed) {
          delete closed[k];
          last = "";
        } else if (k in opened) {  // a block opened to one op: its box closes it again
          delete opened[k];
          last = "";
        } else if (("+" + k) in variants) {
          opened[k] = true;
          last = "+" + k;
        } else {
          return;
        }
        draw();
      });
    });
  }
  function draw() {
    var k = pick(wanted());
    if (k !== current) {
      if (!(k in drawings)) {
        drawings[k] = variants[k].content.querySelector("svg").cloneNode(true);
        learn(drawings[k]);
        bind(drawings[k]);
      }
      root.replaceChild(drawings[k], svg);
      svg = drawings[k];
      current = k;
    }
    var done = k ? k.split("|") : [];
    Object.keys(opened).forEach(function (o) { if (done.indexOf("+" + o) < 0) { delete opened[o]; } });
    function hidden(gid) {  // inside a block closed in place (not by the drawing itself)
      for (var c in closed) { if (done.indexOf("-" + c) < 0 && within(gid, c)) { return true; } }
      return false;
    }
    each(svg.querySelectorAll("[data-group]"), function (el) {
      el.style.display = hidden(el.getAttribute("data-group")) ? "none" : "";
    });
    each(svg.querySelectorAll("g.group"), function (g) {
      var title = g.querySelector("text.title");
      g.style.display = hidden(parent[g.id]) ? "none" : "";
      g.classList.toggle("closed", g.id in closed);
      title.textContent = (g.id in closed ? "\u25b8 " : "") + title.getAttribute("data-text");
    });
    each(svg.querySelectorAll("g.box[data-key]"), function (b) {
      var key = b.getAttribute("data-key");
      b.classList.toggle("reopen", key in closed || key in opened || ("+" + key) in variants);
    });
    mark();
  }
  function words(el) {
    var t = el.querySelector("title"), s = el.classList.contains("group") ? el.getAttribute("data-text") : "";
    each(el.querySelectorAll("text"), function (x) { s += " " + x.textContent; });
    return (s + " " + (t ? t.textContent : "")).toLowerCase();
  }
  var search = document.getElementById("search"), hits = document.getElementById("hits"), found = {};
  function mark() {  // outline the matches in the drawing shown, dim the other boxes
    var q = (search.value || "").trim();
    each(svg.querySelectorAll("g.box, g.group"), function (el) {
      el.classList.toggle("hit", el.id in found);
      el.classList.toggle("dim", q !== "" && !(el.id in found) && el.classList.contains("box"));
    });
  }
  search.addEventListener("input", function () {
    var q = (search.value || "").trim().toLowerCase(), n = 0;
    found = {};
    each(full.querySelectorAll("g.box, g.group"), function (el) {  // the drawing asked for, all of it
      if (q === "" || words(el).indexOf(q) < 0) { return; }
      found[el.id] = true;
      n += 1;
      var gid = el.classList.contains("box") ? el.getAttribute("data-group") : parent[el.id];
      for (; gid; gid = parent[gid]) { delete closed[gid]; }
    });
    hits.textContent = q === "" ? "" : n + (n === 1 ? " match" : " matches");
    draw();
  });
  document.getElementById("fit").addEventListener("click", function () {
    root.classList.toggle("fit");
  });
  bind(full);
  draw();
})();
"""


def toggle_states(d: Diagram, limit: int) -> list[frozenset[str]]:
    """What the page may ask for, as sets of toggles of the drawing `d`: `-id`, the open block
    `id` closed; `+key`, the closed block whose box has `key` opened. Each toggle alone
    (closing the outermost blocks first, then opening), then pairs, and so on, never closing
    a block together with one inside it; at most `limit`."""
    parent = {g.id: g.parent for g in d.groups}
    ancestors: dict[str, set] = {}
    for g in d.groups:
        a, p = set(), g.parent
        while p:
            a.add(p)
            p = parent[p]
        ancestors[g.id] = a
    toggles = ["-" + i for i in sorted(parent, key=lambda i: (len(ancestors[i]), i))] + \
        sorted({"+" + b.key for b in d.boxes if b.key and b.kind == "block"})
    clash = lambda a, b: a[0] == b[0] == "-" and (a[1:] in ancestors[b[1:]] or b[1:] in ancestors[a[1:]])
    states: list[frozenset[str]] = []
    frontier: list[tuple[int, ...]] = [()]
    while frontier and len(states) < limit:
        grown = []
        for s in frontier:
            for j in range(s[-1] + 1 if s else 0, len(toggles)):
                if any(clash(toggles[i], toggles[j]) for i in s):
                    continue
                grown.append(s + (j,))
                states.append(frozenset(toggles[i] for i in s + (j,)))
                if len(states) >= limit:
                    return states
        frontier = grown
    return states


def to_html(d: Diagram, lay: Layout, variants: list[tuple[frozenset[str], str]] = ()) -> str:
    """The whole page: the SVG of `to_svg`, unchanged, inside it, and the `variants` (the
    toggles of `toggle_states`, the SVG drawn so) in templates for the script."""
    svg = to_svg(d, lay)
    name = escape(d.name)
    held = [f'<template data-state="{xml_attr("|".join(sorted(state)))}">{text.rstrip()}</template>'
            for state, text in variants]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{name} · archlang diagram</title>",
        f"<style>{PAGE_STYLE}</style>",
        "</head>",
        "<body>",
        '<div id="bar">',
        f"<strong>{name}</strong>",
        '<input id="search" type="search" placeholder="search a box or block" aria-label="search">',
        '<span id="hits"></span>',
        '<button id="fit" type="button">fit</button>',
        "<span id=\"help\">click a block's title to close it, its box to open it; hover a wire for its type</span>",
        "</div>",
        '<div id="diagram" class="fit">',
        svg.rstrip("\n"),
        "</div>",
        *held,
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
    ]) + "\n"
