"""Regenerate docs/diagrams/: `python docs/gen_diagrams.py` (from anywhere).

Each example is drawn as `archc render` draws it, with the options below (chosen so each
reads at a glance: the transformers with their layer open one level, then GPT-2 with every
op; the U-Net with each conv block closed, drawn as a U; the GRU with its scan bodies open),
as SVG; GPT-2 also as an HTML page (search, blocks to close and open)."""
from __future__ import annotations

import sys
from pathlib import Path

from archlang.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIAGRAMS = {  # file name -> (example, options)
    "gpt2": ("gpt2", ["--depth", "1"]),
    "gpt2_ops": ("gpt2", ["--depth", "2"]),
    "bert": ("bert", ["--depth", "1"]),
    "vit": ("vit", ["--depth", "1"]),
    "resnet50": ("resnet50", ["--depth", "0"]),
    "unet": ("unet", ["--depth", "0"]),
    "rnn": ("rnn", []),
}
PAGES = {"gpt2": ("gpt2", ["--depth", "2"])}  # also written as .html

if __name__ == "__main__":
    out = ROOT / "docs" / "diagrams"
    jobs = [(name, "svg", spec) for name, spec in DIAGRAMS.items()] + \
        [(name, "html", spec) for name, spec in PAGES.items()]
    for name, ext, (example, options) in jobs:
        code = main(["render", str(ROOT / "examples" / f"{example}.arch"), "-o", str(out / f"{name}.{ext}"), *options])
        if code:
            sys.exit(code)
        print(f"wrote docs/diagrams/{name}.{ext}")
