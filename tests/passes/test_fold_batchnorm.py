"""fold-batchnorm (compiler/passes/rules/batchnorm.py): batchnorm(conv(x, w[, c])) becomes
one conv whose weight and bias are IR nodes on the parameters; the folded graph computes
what -O0 computes, on both backends, with non-trivial statistics.

Cases: 1. a conv without bias; 2. with bias; 3. through the rename a block boundary puts
between them (stdlib `BatchNorm2d` after `Conv2d[..., bias=false]`); 4. declined: statistics
computed from the input (batch statistics), a batchnorm after something else.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ir import print_graph
from archlang.compiler.passes import PassContext, optimize

from pass_checks import assert_matches

SOURCE = """
use "conv"
axis batch
axis c = 3, o = 4, k = 3, kw = 3, h = 8, w = 8
model M(x: f32[batch, c, h, w]) -> (a: f32[batch, o, h, w], b: f32[batch, o, h, w], r: f32[batch, o, h, w],
                                    s: f32[batch, o, h, w], t: f32[batch, c, h, w]) {
  param wt: [o, c, k, kw] = normal(0.5)
  param cb: [o] = normal(0.5)
  param g: [o] = normal(1.0)
  param be: [o] = normal(1.0)
  param mu: [o] = normal(1.0)
  param var: [o] = uniform(over o)
  param gc: [c] = normal(1.0)
  y = conv(x, wt, padding=1 over (h, w) -> (h, w))
  a = batchnorm(y, g, be, mu, var * var + 0.5, eps=1e-3 over o)
  b = batchnorm(conv(x, wt, cb, padding=1 over (h, w) -> (h, w)), g, be, mu, var * var + 0.5 over o)
  r = BatchNorm2d[o](Conv2d[c, o, k, h, w, h, w, padding=same, bias=false](x) as conv) as bn
  z = conv(x, wt, padding=1 over (h, w) -> (h, w))
  z2 = conv(x * 2.0, wt, padding=1 over (h, w) -> (h, w))
  s = batchnorm(z, g, be, mean(z2 over batch, h, w), var * var + 0.5 over o)
  t = batchnorm(x * 2.0, gc, gc, gc, gc * gc + 0.5 over c)
  return a, b, r, s, t
}
"""


def _load(write_arch):
    return load_graph(str(write_arch(SOURCE)), SourceCache(), {})


def test_batchnorm_after_conv_folds(write_arch):
    graph = _load(write_arch)
    ctx = PassContext()
    ctx.tracer.enabled = True
    # simplify-algebra first, as at -O2: the two renames between the blocks become one
    report = optimize(graph, only=["simplify-algebra", "fold-batchnorm", "eliminate-dead-nodes"], ctx=ctx)
    assert report.counts()["fold-batchnorm-into-conv"] == 3
    ops = [n.op for n in graph.nodes]
    assert ops.count("batchnorm") == 2 and ops.count("conv") == 5
    text = ctx.tracer.report()
    assert "the batchnorm's `mean` depends on the input" in text
    # The folded weight is arithmetic on the parameters, lowered like any other node.
    lines = [re.sub(r"%\d+", "%_", l.split("  @")[0].strip()) for l in print_graph(graph).splitlines()]
    assert "%_ = rsqrt(%_) : f32[o=4]" in lines
    assert "%_ = mul(%_, %_) : f32[o=4, c=3, k=3, kw=3]" in lines


@pytest.mark.parametrize("batch", [1, 3])
def test_folded_graph_matches_O0_on_both_backends(write_arch, batch):
    reference = _load(write_arch)
    params = load_params(reference, None, seed=5)
    inputs = {"x": np.random.default_rng(batch).normal(size=(batch, 3, 8, 8)).astype(np.float32)}
    want = run_graph(reference, params, inputs)
    folded = _load(write_arch)
    optimize(folded, only=["simplify-algebra", "fold-batchnorm", "eliminate-dead-nodes"])
    assert sum(n.op == "batchnorm" for n in folded.nodes) == 2
    assert_matches(want, folded, params, inputs, rtol=1e-4, atol=1e-4)
