"""`archc sweep`: every variant of a grid compiled and measured; refused variants reported
with the compiler's own error while the sweep goes on."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph
from archlang.compiler.summary import evaluate, summarize
from archlang.compiler.sweep import peak_activation_bytes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMALL_GPT2 = ["--set", "layers=1", "--set", "embed=32", "--set", "vocab=50", "--set", "batch=1", "--set", "seq=8"]


def archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlang.compiler.cli", *args], capture_output=True, text=True)


def test_grid_with_a_refused_variant(tmp_path):
    out = tmp_path / "sweep.csv"
    run = archc("sweep", str(EXAMPLES / "gpt2.arch"), "--grid", "heads=3,4", "layers=1,2", *SMALL_GPT2[2:],
                "--runs", "2", "--csv", str(out))
    # heads=3 does not divide embed=32: both of its variants are refused, the others measured.
    assert run.returncode == 1, run.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["heads"], r["layers"]) for r in rows] == [("3", "1"), ("3", "2"), ("4", "1"), ("4", "2")]
    for r in rows[:2]:
        assert "error: axis `head`: 32 / 3 is not a whole number" in r["error"]
        assert r["params"] == ""
    for r in rows[2:]:
        graph = load_graph(str(EXAMPLES / "gpt2.arch"), SourceCache(),
                           {"embed": "32", "vocab": "50", "batch": "1", "seq": "8", "heads": "4",
                            "layers": r["layers"]})
        summary = summarize(graph)
        assert int(r["params"]) == summary.total.params
        assert int(r["macs"]) == evaluate(summary.total.macs, {})
        assert float(r["latency_ms"]) > 0 and float(r["compile_s"]) > 0 and r["error"] == ""
    assert int(rows[3]["params"]) > int(rows[2]["params"])
    assert "32 / 3 is not a whole number" in run.stdout
    assert "[4/4] done" in run.stderr


def test_open_sizes_give_formulas_and_no_latency():
    run = archc("sweep", str(EXAMPLES / "mlp.arch"), "--grid", "hidden=8,16")
    assert run.returncode == 0, run.stderr
    assert "6.35K*batch" in run.stdout and "12.70K*batch" in run.stdout
    assert "sizes batch left open" in run.stdout


def test_bad_grid_is_a_usage_error():
    run = archc("sweep", str(EXAMPLES / "mlp.arch"), "--grid", "hidden")
    assert run.returncode == 2
    assert "--grid expects NAME=V1,V2,..., got 'hidden'" in run.stderr


def test_peak_activations_of_the_mlp():
    """x [4, 784] and the first layer's product [4, 256] are alive together (f32); renames
    are views, so they add nothing."""
    graph = load_graph(str(EXAMPLES / "mlp.arch"), SourceCache(), {"batch": "4"})
    assert peak_activation_bytes(graph) == 4 * 784 * 4 + 4 * 256 * 4
