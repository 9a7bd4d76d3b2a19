"""Copy numbers in `repeat` names (`as "layer.{i+1}"`) and compile-time structure in blocks
(`if`, `true`/`false`, word and tuple constant parameters).

Names are checked exactly; a model whose structure an `if` switches is run on the NumPy
backend and on onnxruntime, and both are compared with the formula computed here.
"""
from __future__ import annotations

import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from archlang.backends.diagram import build_diagram
from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import compile_to_file
from archlang.compiler.diagnostics import CompileError, SourceCache
from archlang.compiler.driver import load_graph, load_params

HEADER = """
axis batch, embed = 4
const offset = 10

block Scale[d, gain = true, bias = false, k = 1](x: f32[..., d]) -> f32[..., d] {
  y = x
  if gain {
    param weight: [d] = ones
    y = y * weight
  }
  if bias and k > 0 {
    param bias: [d] = zeros
    y = y + bias
  } else if not gain {
    return y * k
  }
  return y
}
"""


def build(tmp_path, body: str, sets=None):
    path = tmp_path / "model.arch"
    path.write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    return load_graph(str(path), SourceCache(), sets)


def test_copy_numbers_from_an_offset_and_constants(tmp_path):
    g = build(tmp_path, """
        model M(x: f32[batch, embed]) -> f32[batch, embed] {
          h = Scale[embed](x) as "layer.0"
          h = repeat 3 Scale[embed](h) as "layer.{i+1}"
          h = repeat 2 Scale[embed](h) as "blocks.{2 * (i + offset) // 2}.b"
          h = repeat 2 Scale[embed](h) as "tail{i}"
          return h
        }
    """)
    assert sorted(g.params) == sorted(["layer.0.weight", "layer.1.weight", "layer.2.weight", "layer.3.weight",
                                       "blocks.10.b.weight", "blocks.11.b.weight", "tail0.weight", "tail1.weight"])
    groups = {grp.path: grp.repeat for grp in build_diagram(g).groups}  # each repeat drawn once, marked × N
    assert groups["layer.1 … layer.3"] == 3 and groups["blocks.10.b … blocks.11.b"] == 2, groups


def test_copy_numbers_from_a_block_parameter(tmp_path):
    g = build(tmp_path, """
        block Stage[d, first = 0](x: f32[..., d]) -> f32[..., d] {
          y = repeat 2 Scale[d](x) as "layers.{first + i}"
          return y
        }
        model M(x: f32[batch, embed]) -> f32[batch, embed] {
          return Stage[embed, first=5](x) as s
        }
    """)
    assert sorted(g.params) == ["s.layers.5.weight", "s.layers.6.weight"]


def test_if_builds_only_the_branch_taken(tmp_path):
    g = build(tmp_path, """
        model M(x: f32[batch, embed]) -> (a: f32[batch, embed], b: f32[batch, embed], c: f32[batch, embed]) {
          a = Scale[embed](x) as plain
          b = Scale[embed, bias=true](x) as biased
          c = Scale[embed, gain=false, k=3](x) as scaled
          return a, b, c
        }
    """)
    assert sorted(g.params) == ["biased.bias", "biased.weight", "plain.weight"]
    params = load_params(g, None, 0)
    params = {k: np.random.default_rng(1).standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    want = {"a": x * params["plain.weight"], "b": x * params["biased.weight"] + params["biased.bias"], "c": x * 3}
    got = run_graph(g, params, {"x": x})
    path = tmp_path / "m.onnx"
    compile_to_file(g, params, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_ort = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x})))
    for name, w in want.items():
        np.testing.assert_allclose(got[name], w, atol=1e-6)
        np.testing.assert_allclose(got_ort[name], w, atol=1e-6)


def test_set_switches_a_boolean_constant(tmp_path):
    body = """
        const norm = true
        model M(x: f32[batch, embed]) -> f32[batch, embed] {
          if norm {
            param scale: [embed] = ones
            return layernorm(x, scale over embed)
          }
          return x
        }
    """
    assert list(build(tmp_path, body).params) == ["scale"]
    assert list(build(tmp_path, body, {"norm": "false"}).params) == []


def test_words_and_tuples_reach_op_keywords(tmp_path):
    g = build(tmp_path, """
        axis c = 2, h = 6, w = 6, k = 3, kw ~ k, a1 = 3, a2 = 6, b1 = 5, b2 = 8
        block Conv[cin, oh, ow, stride = 1, padding = 0](x: f32[..., cin, h, w]) -> f32[..., cin, oh, ow] {
          axis cout ~ cin
          param weight: [cout, cin, k, kw]
          return rename(conv(x, weight, stride=stride, padding=padding over (h, w) -> (oh, ow)), cout -> cin)
        }
        model M(x: f32[batch, c, h, w]) -> (a: f32[batch, c, a1, a2], b: f32[batch, c, b1, b2]) {
          return Conv[c, a1, a2, stride=(2, 1), padding=same](x) as a, Conv[c, b1, b2, padding=((0, 1), 2)](x) as b
        }
    """)
    convs = [n.attrs for n in g.nodes if n.op == "conv"]
    assert [(c["stride"], c["pads"]) for c in convs] == [((2, 1), ((0, 1), (1, 1))), ((1, 1), ((0, 1), (2, 2)))]


@pytest.mark.parametrize("body, words", [
    ('return Scale[embed, bias=1](x)', ["`bias`", "true or false", "`1`"]),
    ('return Scale[embed, k=true](x)', ["`k`", "not a boolean"]),
    ('return x * (true and 2)', ["`and` needs true or false", "`2` is a number"]),
])
def test_bad_uses(tmp_path, body, words):
    with pytest.raises(CompileError) as info:
        build(tmp_path, f"model M(x: f32[batch, embed]) -> f32[batch, embed] {{\n  {body}\n}}\n")
    message = info.value.diagnostics[0].message
    for w in words:
        assert w in message, message
