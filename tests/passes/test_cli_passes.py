"""The optimisation options of the command line, run as a user runs them."""
from __future__ import annotations

import numpy as np

from conftest import EXAMPLES

GPT2 = EXAMPLES / "gpt2.arch"
SMALL = ["--set", "layers=2", "--set", "embed=64", "--set", "heads=4", "--set", "vocab=100"]


def test_ir_shows_the_graph_as_written_unless_asked(archc_inprocess):
    plain = archc_inprocess("ir", GPT2, *SMALL)
    optimised = archc_inprocess("ir", GPT2, *SMALL, "-O2")
    assert plain.returncode == optimised.returncode == 0
    assert "softmax(" in plain.stdout and "attention(" not in plain.stdout
    assert optimised.stdout.count(" = attention(") == 2 and "softmax(" not in optimised.stdout


def test_explain_lists_fired_rules_by_place(archc_inprocess):
    r = archc_inprocess("ir", GPT2, *SMALL, "-O2", "--explain")
    assert r.returncode == 0
    assert "fired    attention at gpt2.arch:23:11 in h.0.attn, h.1.attn" in r.stderr
    assert "passes: " in r.stderr and "attention: 2" in r.stderr


def test_passes_and_disable_pass_choose_what_runs(archc_inprocess):
    only = archc_inprocess("ir", GPT2, *SMALL, "--passes", "fuse-attention,eliminate-dead-nodes")
    assert only.returncode == 0 and " = attention(" in only.stdout
    off = archc_inprocess("ir", GPT2, *SMALL, "-O2", "--disable-pass", "fuse-attention")
    assert off.returncode == 0 and " = attention(" not in off.stdout


def test_unknown_pass_is_a_usage_error(archc_inprocess):
    r = archc_inprocess("ir", GPT2, "--passes", "fuse-everything")
    assert r.returncode == 2
    assert "no pass named `fuse-everything`" in r.stderr and "fuse-attention" in r.stderr
    r = archc_inprocess("ir", GPT2, "--print-after", "nope")
    assert r.returncode == 2 and "--print-after: no pass named nope" in r.stderr


def test_print_after_shows_the_ir_after_that_pass(archc_inprocess):
    r = archc_inprocess("ir", GPT2, *SMALL, "-O2", "--print-after", "fuse-attention")
    assert r.returncode == 0
    assert r.stdout.startswith("// after fuse-attention\ngraph GPT2 {")
    assert r.stdout.count("// after fuse-attention") == 1


def test_passes_command_lists_each_pass_with_its_levels(archc_inprocess):
    r = archc_inprocess("passes")
    assert r.returncode == 0
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "(-O2)" in lines["fuse-attention"] and "-O1, -O2" in lines["eliminate-dead-nodes"]


def test_compile_and_run_optimise_by_default_and_agree_with_O0(archc_inprocess, tmp_path):
    o0 = archc_inprocess("compile", GPT2, *SMALL, "-O0", "-o", tmp_path / "o0.onnx")
    o2 = archc_inprocess("compile", GPT2, *SMALL, "-o", tmp_path / "o2.onnx")
    assert o0.returncode == o2.returncode == 0
    nodes = [int(r.stderr.split("(")[1].split()[0]) for r in (o0, o2)]
    assert nodes[1] < nodes[0]
    outs = {}
    for level in ("-O0", "-O2"):
        for backend in ("numpy", "onnx"):
            out = tmp_path / f"{level}{backend}.npz"
            r = archc_inprocess("run", GPT2, *SMALL, level, "--backend", backend, "--output", out)
            assert r.returncode == 0, r.stderr
            outs[level, backend] = np.load(out)["output"]
    for key, got in outs.items():
        np.testing.assert_allclose(got, outs["-O0", "numpy"], rtol=1e-5, atol=1e-5, err_msg=str(key))


def test_portable_and_opset_17_emit_only_standard_ops(archc_inprocess, tmp_path):
    import onnx
    for extra, attention in ((["--target", "portable"], True), (["--opset", "17"], False)):
        out = tmp_path / "m.onnx"
        r = archc_inprocess("compile", GPT2, *SMALL, *extra, "-o", out)
        assert r.returncode == 0, r.stderr
        model = onnx.load(str(out))
        assert {n.domain for n in model.graph.node} == {""}, extra
        assert any(n.op_type == "Attention" for n in model.graph.node) == attention, extra
        onnx.checker.check_model(model, full_check=True)
