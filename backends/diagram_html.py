"""The diagram as one self-contained HTML page: the SVG inline and a small script of its own
(no external file, no network). On the page:

- click a fence's title to close the block (what it holds is hidden, the fence stays where
  it is and is tinted, its title marked ▸) and again to open it;
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
from .svg import to_svg

PAGE_STYLE = """
body { margin: 0; font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; background: #fff; color: #222; }
#bar { position: sticky; top: 0; z-index: 1; display: flex; gap: 12px; align-items: center; padding: 8px 16px;
       background: #f3f5fa; border-bottom: 1px solid #d5dbe8; font-size: 14px; }
#bar input { font: inherit; padding: 3px 6px; width: 18em; }
#bar button { font: inherit; }
#hits, #help { color: #56607a; font-size: 12px; }
#diagram { overflow: auto; }
#diagram.fit svg { width: 100%; height: auto; }
#diagram .group > text.title { cursor: pointer; }
#diagram .group.closed > rect.fence { fill: #fff6dd; stroke: #a8842c; }
#diagram .hit > rect, #diagram .group.hit > rect.fence { stroke: #e8590c; stroke-width: 3; }
#diagram .dim { opacity: 0.25; }
#diagram path.wire:hover { stroke: #e8590c; stroke-width: 2.4; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var root = document.getElementById("diagram");
  var svg = root.querySelector("svg");
  var parent = {}, fences = {}, closed = {};
  Array.prototype.forEach.call(svg.querySelectorAll("g.group"), function (g) {
    parent[g.id] = g.getAttribute("data-parent");
    fences[g.id] = g;
  });
  function within(gid, anc) {  // gid is anc or lies inside it
    for (; gid; gid = parent[gid]) { if (gid === anc) { return true; } }
    return false;
  }
  function hidden(gid) {
    for (var c in closed) { if (within(gid, c)) { return true; } }
    return false;
  }
  function refresh() {
    Array.prototype.forEach.call(svg.querySelectorAll("[data-group]"), function (el) {
      el.style.display = hidden(el.getAttribute("data-group")) ? "none" : "";
    });
    Object.keys(fences).forEach(function (id) {
      var g = fences[id], title = g.querySelector("text.title");
      g.style.display = hidden(parent[id]) ? "none" : "";
      g.classList.toggle("closed", id in closed);
      title.textContent = (id in closed ? "\u25b8 " : "") + title.getAttribute("data-text");
    });
  }
  Object.keys(fences).forEach(function (id) {
    var title = fences[id].querySelector("text.title");
    title.setAttribute("data-text", title.textContent);
    title.addEventListener("click", function () {
      if (id in closed) { delete closed[id]; } else { closed[id] = true; }
      refresh();
    });
  });
  var items = Array.prototype.slice.call(svg.querySelectorAll("g.box, g.group"));
  function words(el) {
    var t = el.querySelector("title"), s = el.classList.contains("group") ? el.getAttribute("data-text") : "";
    Array.prototype.forEach.call(el.querySelectorAll("text"), function (x) { s += " " + x.textContent; });
    return (s + " " + (t ? t.textContent : "")).toLowerCase();
  }
  var search = document.getElementById("search"), hits = document.getElementById("hits");
  search.addEventListener("input", function () {
    var q = search.value.trim().toLowerCase(), n = 0;
    items.forEach(function (el) {
      var hit = q !== "" && words(el).indexOf(q) >= 0;
      el.classList.toggle("hit", hit);
      el.classList.toggle("dim", q !== "" && !hit && el.classList.contains("box"));
      if (hit) {
        n += 1;
        var gid = el.classList.contains("box") ? el.getAttribute("data-group") : parent[el.id];
        for (; gid; gid = parent[gid]) { delete closed[gid]; }
      }
    });
    hits.textContent = q === "" ? "" : n + (n === 1 ? " match" : " matches");
    refresh();
  });
  document.getElementById("fit").addEventListener("click", function () {
    root.classList.toggle("fit");
  });
  refresh();
})();
"""


def to_html(d: Diagram, lay: Layout) -> str:
    """The whole page: the SVG of `to_svg`, unchanged, inside it."""
    svg = to_svg(d, lay)
    name = escape(d.name)
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
        "<span id=\"help\">click a block's title to close or open it; hover a wire for its type</span>",
        "</div>",
        '<div id="diagram" class="fit">',
        svg.rstrip("\n"),
        "</div>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
    ]) + "\n"
