"""Derived parameters computed at binding time (compiler/weights_fold.py): after
fold-batchnorm, `archc compile` writes conv with folded initializers instead of the
arithmetic on the original parameters, and the model still computes what -O0 computes.

Cases: 1. conv without and with bias, and a batchnorm that does not fold (its mean reads
the input); 2. the ONNX file loses the arithmetic nodes and the original statistics;
3. folding twice changes nothing; 4. a parameter read as is (or through a rename) is not copied.
"""
from __future__ import annotations

import numpy as np

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.passes import optimize
from archlang.compiler.weights_fold import fold_parameters

from pass_checks import assert_matches

SOURCE = """
axis batch
axis c = 3, o = 4, k = 3, kw = 3, h = 8, w = 8
model M(x: f32[batch, c, h, w]) -> (a: f32[batch, o, h, w], b: f32[batch, o, h, w], s: f32[batch, o, h, w]) {
  param wt: [o, c, k, kw] = normal(0.5)
  param cb: [o] = normal(0.5)
  param g: [o] = normal(1.0)
  param be: [o] = normal(1.0)
  param mu: [o] = normal(1.0)
  param var: [o] = uniform(over o)
  a = batchnorm(conv(x, wt, padding=1 over (h, w) -> (h, w)), g, be, mu, var * var + 0.5, eps=1e-3 over o)
  b = batchnorm(conv(x, wt, cb, padding=1 over (h, w) -> (h, w)), g, be, mu, var * var + 0.5 over o)
  z = conv(x * 2.0, wt, padding=1 over (h, w) -> (h, w))
  s = batchnorm(z, g, be, mean(z over batch, h, w), var * var + 0.5 over o)
  return a, b, s
}
"""


def test_bound_weights_fold_into_conv_initializers(write_arch):
    path = str(write_arch(SOURCE))
    reference = load_graph(path, SourceCache(), {})
    params = load_params(reference, None, seed=5)
    inputs = {"x": np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)}
    want = run_graph(reference, params, inputs)
    graph = load_graph(path, SourceCache(), {})
    optimize(graph, level=2)
    unfolded = [n.op_type for n in to_onnx(graph, params).graph.node]
    bound = fold_parameters(graph, params)
    model = to_onnx(graph, bound)
    ops = [n.op_type for n in model.graph.node]
    assert unfolded.count("Conv") == ops.count("Conv") == 3
    assert ops.count("BatchNormalization") == 1 and "Sqrt" not in ops and "Div" not in ops, ops
    assert len(ops) < len(unfolded) - 5, (ops, unfolded)
    names = {i.name for i in model.graph.initializer}
    assert {"wt.folded", "wt.folded2"} <= names and "mu" not in names and "cb" not in names, names
    assert_matches(want, graph, bound, inputs, model, rtol=1e-4, atol=1e-4)
    assert fold_parameters(graph, bound).keys() == bound.keys()  # nothing left to fold


def test_parameters_read_as_they_are_stay(write_arch):
    path = str(write_arch("""
axis batch
axis a = 3, b = 2
model L(x: f32[batch, a]) -> (y: f32[batch, b]) {
  param w: [a, b] = normal(1.0)
  param bias: [b] = normal(1.0)
  return x @ w + bias
}
"""))
    graph = load_graph(path, SourceCache(), {})
    optimize(graph, level=2)
    params = load_params(graph, None, seed=1)
    bound = fold_parameters(graph, params)
    assert bound.keys() == params.keys() and all(bound[k] is params[k] for k in params)
