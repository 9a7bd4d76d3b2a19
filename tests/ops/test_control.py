"""`scan`: a block applied at each position of an axis, with carried state.

Each program runs through the NumPy backend (checked against a loop written here),
onnxruntime at opsets 23 and 17, and the generated module. Sequence lengths include 0
and 1: onnxruntime's Scan crashes the process on an empty sequence, so a symbolic
scanned axis is lowered behind an If.
"""
from __future__ import annotations

import numpy as np
from test_core_ops import check, close, compile_arch, f64, randn

LENGTHS = [0, 1, 5]


def test_running_sum_carries_state_and_stacks_results(tmp_path):
    src = """
        axis batch, seq
        axis d = 3
        block Step(total: f32[batch, d], x: f32[batch, d]) -> (total: f32[batch, d], seen: f32[batch, d]) {
          total = total + x
          return total, total * 2
        }
        model M(x: f32[batch, seq, d], start: f32[batch, d]) -> (last: f32[batch, d], sums: f32[batch, seq, d]) {
          last, sums = scan seq Step(start, x)
          return last, sums
        }
    """
    runs = [{"x": randn(2, n, 3), "start": randn(2, 3)} for n in LENGTHS]
    res = check(src, runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        x, start = f64(r["x"]), f64(r["start"])
        running = start[:, None, :] + np.cumsum(x, axis=1)
        close(out["sums"], 2 * running)
        close(out["last"], running[:, -1] if x.shape[1] else start)


def test_reverse_visits_last_position_first_and_keeps_positions(tmp_path):
    src = """
        axis seq
        block Step(acc: f32[], x: f32[]) -> (acc: f32[], y: f32[]) {
          acc = acc * 0.5 + x
          return acc, acc
        }
        model M(x: f32[seq]) -> (first: f32[], ys: f32[seq]) {
          first, ys = scan reverse seq Step(0.0, x)
          return first, ys
        }
    """
    runs = [{"x": randn(n)} for n in LENGTHS]
    res = check(src, runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        x, acc, want = f64(r["x"]), 0.0, np.zeros(len(r["x"]))
        for t in reversed(range(len(x))):
            acc = acc * 0.5 + x[t]
            want[t] = acc
        close(out["ys"], want)
        close(out["first"], acc)


def test_whole_arguments_and_parameters_reach_every_step(tmp_path):
    """`w` has no `seq`, so each step sees all of it; the block's parameter is read from
    the enclosing graph (once, not per step)."""
    src = """
        axis batch, seq
        axis d = 4, e = 3
        block Step(h: f32[batch, e], x: f32[batch, d], w: f32[d, e]) -> (h: f32[batch, e], y: f32[batch, e]) {
          param bias: [e] = normal(1.0)
          h = tanh((x @ w over d) + h + bias)
          return h, h
        }
        model M(x: f32[batch, seq, d], w: f32[d, e]) -> f32[batch, seq, e] {
          _last, ys = scan seq Step(zeros(batch, e), x, w) as step
          return ys
        }
    """
    runs = [{"x": randn(2, n, 4), "w": randn(4, 3)} for n in LENGTHS]
    res = check(src, runs, module_dir=tmp_path)
    bias = f64(res.params["step.bias"])
    for got, r in zip(res.outs(), runs):
        x, w = f64(r["x"]), f64(r["w"])
        h, want = np.zeros((2, 3)), np.zeros((2, x.shape[1], 3))
        for t in range(x.shape[1]):
            h = np.tanh(x[:, t] @ w + h + bias)
            want[:, t] = h
        close(got, want)


def test_a_scan_without_state_is_a_map_and_one_with_only_state_a_fold(tmp_path):
    src = """
        axis seq, batch
        axis d = 2
        block Square(x: f32[batch, d]) -> f32[batch, d] {
          return x * x
        }
        block Max(m: f32[batch, d], x: f32[batch, d]) -> (m: f32[batch, d]) {
          return max(m, x)
        }
        model M(x: f32[seq, batch, d]) -> (squares: f32[batch, seq, d], biggest: f32[batch, d]) {
          squares = scan seq Square(x)
          biggest = scan seq Max(select(x, seq, 0), x)
          return squares, biggest
        }
    """
    runs = [{"x": randn(n, 3, 2)} for n in (1, 4)]
    res = check(src, runs, module_dir=tmp_path)
    for out, r in zip(res.outputs, runs):
        close(out["squares"], np.transpose(f64(r["x"]) ** 2, (1, 0, 2)))
        close(out["biggest"], f64(r["x"]).max(axis=0))


def test_static_axis_needs_no_guard_and_nested_scans_work(tmp_path):
    """A scan inside a scan's step (rows, then columns) over a fixed-size axis."""
    src = """
        axis row = 3, col = 4
        block Cell(acc: f32[], x: f32[]) -> (acc: f32[], y: f32[]) {
          acc = acc + x
          return acc, acc
        }
        block Row(total: f32[], x: f32[col]) -> (total: f32[], prefix: f32[col]) {
          row_total, prefix = scan col Cell(total, x)
          return row_total, prefix
        }
        model M(x: f32[row, col]) -> (total: f32[], prefix: f32[row, col]) {
          total, prefix = scan row Row(0.0, x)
          return total, prefix
        }
    """
    x = randn(3, 4)
    res = check(src, {"x": x}, module_dir=tmp_path)
    flat = np.cumsum(f64(x).reshape(-1)).reshape(3, 4)
    close(res.outputs[0]["prefix"], flat)
    close(res.outputs[0]["total"], f64(x).sum())


def test_the_ir_holds_one_scan_node_with_its_body():
    graph = compile_arch("""
        axis seq
        block Step(s: f32[], x: f32[]) -> (s: f32[]) {
          return s + x
        }
        model M(x: f32[seq]) -> f32[] {
          total = scan seq Step(0.0, x)
          return total
        }
    """)
    (scan,) = [n for n in graph.nodes if n.op == "scan"]
    body = scan.attrs["body"]
    assert [n.op for n in body.nodes] == ["add"]
    assert [n for n, _ in body.inputs] == ["s", "x"] and scan.attrs["carried"] == 1


# Errors are in the UI corpus: tests/ui/scan/*.arch with their rendered .stderr.
