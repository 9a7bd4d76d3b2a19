"""`archc summary`: parameters and multiply-accumulates per block.

Counts against torch's own (state_dict elements, FlopCounterMode) are in
tests/parity/test_summary_counts.py; here, what needs no reference: the table a user
reads, costs that stay polynomials until sizes are given, and totals that passes do not
change (a fused op costs what the ops it replaced cost).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from archlang.compiler.axes import Size
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph
from archlang.compiler.passes import optimize
from archlang.compiler.summary import evaluate, summarize

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlang.compiler.cli", *args], capture_output=True, text=True)


def test_mlp_table():
    run = archc("summary", str(EXAMPLES / "mlp.arch"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[:5] == [
        "block        output                params           MACs",
        "--------------------------------------------------------",
        "MLP          f32[batch, classes]  203,530  203.26K*batch",
        "fc1: Linear  f32[batch, hidden]   200,960  200.70K*batch",
        "fc2: Linear  f32[batch, classes]    2,570    2.56K*batch",
    ]
    assert "(costs are per batch: give sizes with --set batch=N)" in run.stdout


def test_sizes_given_print_numbers():
    run = archc("summary", str(EXAMPLES / "mlp.arch"), "--set", "batch=8")
    assert run.returncode == 0, run.stderr
    # 8 * (784 * 256 + 256 * 10)
    assert "multiply-accumulates per inference: 1,626,112 (1.63M)" in run.stdout


def test_gpt2_costs_are_polynomials_in_batch_and_seq():
    summary = summarize(load_graph(str(EXAMPLES / "gpt2.arch"), SourceCache()), depth=1)
    layer = next(r for r in summary.rows if r.name == "h.0")
    embed, hidden = 768, 3072
    # q, k, v and the output projection, the MLP's two layers: per token; attention's two
    # products: per token pair.
    per_token = 4 * embed * embed + 2 * embed * hidden
    assert layer.macs == Size.of(per_token) * Size.of("batch") * Size.of("seq") \
        + Size.of(2 * embed) * Size.of("batch") * Size.of("seq") * Size.of("seq")
    assert evaluate(summary.total.macs, {"batch": 1, "seq": 128}) == 12 * (per_token * 128 + 2 * embed * 128 * 128)
    assert summary.total.params == 124_439_808


def test_depth_zero_lists_only_the_model():
    run = archc("summary", str(EXAMPLES / "mlp.arch"), "--depth", "0")
    assert run.returncode == 0, run.stderr
    assert "fc1" not in run.stdout


@pytest.mark.parametrize("example", sorted(p.stem for p in EXAMPLES.glob("*.arch")))
def test_passes_keep_the_totals(example):
    """-O2 fuses contractions into linear, attention and gated ops: each must cost what the
    ops it replaced cost, and no parameter may be lost from the count."""
    before = summarize(load_graph(str(EXAMPLES / f"{example}.arch"), SourceCache()))
    graph = load_graph(str(EXAMPLES / f"{example}.arch"), SourceCache())
    optimize(graph, 2)
    after = summarize(graph)
    assert after.total.macs == before.total.macs
    assert after.total.params == before.total.params
