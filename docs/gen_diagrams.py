"""Regenerate docs/diagrams/: `python docs/gen_diagrams.py` (from anywhere).

Each example is drawn as `archc render` draws it, with the options below (chosen so each
reads at a glance: the transformer with its blocks open one level, the U-Net with each
conv block closed), as SVG; GPT-2 also as an HTML page (search, closable blocks)."""
from __future__ import annotations

import sys
from pathlib import Path

from archlang.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = {
    "gpt2": ["--depth", "2"],
    "bert": ["--depth", "1"],
    "vit": ["--depth", "1"],
    "resnet50": ["--depth", "0", "--no-sizes"],
    "unet": ["--depth", "0"],
    "rnn": [],
}
PAGES = {"gpt2": ["--depth", "2"]}  # also written as .html

if __name__ == "__main__":
    out = ROOT / "docs" / "diagrams"
    jobs = [(name, "svg", options) for name, options in DIAGRAMS.items()] + \
        [(name, "html", options) for name, options in PAGES.items()]
    for name, ext, options in jobs:
        code = main(["render", str(ROOT / "examples" / f"{name}.arch"), "-o", str(out / f"{name}.{ext}"), *options])
        if code:
            sys.exit(code)
        print(f"wrote docs/diagrams/{name}.{ext}")
