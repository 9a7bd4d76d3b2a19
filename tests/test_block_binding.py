"""Block calls: one wire bound to several axis parameters, and calls without a name prefix.

- `Conv[c, c, ...]` (equal channels) and `DW[c, k, h, w, h, w]` (a stride-1 conv whose output
  grid is its input's) compile, run alike in onnxruntime and NumPy, equal a convolution
  written here by hand, and equal the same model written the old way (copy axes and renames).
- A message about a missing argument axis never lists that axis among the value's.
- `Block(x) as ""` names the block's parameters as if its body were written in the caller:
  the same names and the same numbers as the inlined body; its nodes keep a block path of
  their own for diagrams.
The error cases are UI goldens: tests/ui/blocks/one_wire_*.arch, unprefixed_clash_*.arch.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from archlang.backends.diagram import build_diagram
from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import compile_to_file
from archlang.compiler.diagnostics import CompileError, SourceCache
from archlang.compiler.driver import load_graph, load_params


def build(source: str, tmp_path: Path, name: str = "model.arch"):
    return load_graph(str(tmp_path / name), SourceCache(), {}, text=source)


def noisy_params(graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial values plus noise, so zero biases and unit weights matter."""
    rng = np.random.default_rng(seed + 1)
    return {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
            for k, v in load_params(graph, None, seed=seed).items()}


def run_both(graph, params, inputs, tmp_path: Path) -> dict[str, np.ndarray]:
    """NumPy's outputs, after checking onnxruntime's agree with them."""
    path = tmp_path / "model.onnx"
    compile_to_file(graph, params, str(path))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, inputs)))
    want = run_graph(graph, params, inputs)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
    return want


# ---- one wire, several parameters ---------------------------------------------------------

CONVS = """
axis batch, c = 4, h = 6, w = 5, k3 = 3

# One filter per channel; the output grid is a parameter of its own.
block DW[c, k, h, w, oh, ow](x: f32[..., c, h, w]) -> f32[..., c, oh, ow] {
  axis kw ~ k, one = 1
  param weight: [c, one, k, kw] = kaiming(over one, k, kw)
  param bias: [c] = zeros
  return conv(x, weight, bias, padding=1 over (h, w) -> (oh, ow))
}

block Conv[cin, cout, k, h, w, oh, ow](x: f32[..., cin, h, w]) -> f32[..., cout, oh, ow] {
  axis kw ~ k
  param weight: [cout, cin, k, kw] = kaiming(over cin, k, kw)
  param bias: [cout] = zeros
  return conv(x, weight, bias, padding=1 over (h, w) -> (oh, ow))
}
"""

ONE_WIRE = CONVS + """
model M(x: f32[batch, c, h, w]) -> f32[batch, c, h, w] {
  y = relu(DW[c, k3, h, w, h, w](x) as dw)
  return x + Conv[c, c, k3, h, w, h, w](y) as pw
}
"""

COPY_AXES = CONVS + """
axis c2 ~ c, h2 ~ h, w2 ~ w

model M(x: f32[batch, c, h, w]) -> f32[batch, c, h, w] {
  y = rename(relu(DW[c, k3, h, w, h2, w2](x) as dw), h2 -> h, w2 -> w)
  return x + rename(Conv[c, c2, k3, h, w, h2, w2](y) as pw, c2 -> c, h2 -> h, w2 -> w)
}
"""


def conv2d_by_hand(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, groups: int) -> np.ndarray:
    """Cross-correlation, stride 1, padding 1, in float64: x [n, cin, h, w], weight [cout, cin/groups, k, k]."""
    n, cin, hh, ww = x.shape
    cout, per, k, _ = weight.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, cout, hh, ww))
    for o in range(cout):
        g = o // (cout // groups)
        for i in range(per):
            for dy in range(k):
                for dx in range(k):
                    out[:, o] += weight[o, i, dy, dx] * xp[:, g * per + i, dy:dy + hh, dx:dx + ww]
    return out + bias[None, :, None, None]


def test_equal_channels_and_stride1_depthwise_compile_and_match(tmp_path):
    graph = build(ONE_WIRE, tmp_path)
    assert {n: s.type.describe() for n, s in graph.params.items()} == {
        "dw.weight": "f32[c=4, one=1, k=3, kw=3]", "dw.bias": "f32[c=4]",
        "pw.weight": "f32[cout=4, cin=4, k=3, kw=3]", "pw.bias": "f32[cout=4]"}
    assert graph.outputs[0][1].type.names == ("batch", "c", "h", "w")  # back on the caller's wires
    params = noisy_params(graph)
    x = np.random.default_rng(2).standard_normal((2, 4, 6, 5)).astype(np.float32)
    got = run_both(graph, params, {"x": x}, tmp_path)["output"]

    y = np.maximum(conv2d_by_hand(x, params["dw.weight"], params["dw.bias"], groups=4), 0)
    want = x + conv2d_by_hand(y, params["pw.weight"], params["pw.bias"], groups=1)
    assert np.abs(got - want).max() < 1e-4

    # The same model with copy axes and renames (the only way before): the same numbers.
    old = build(COPY_AXES, tmp_path, "old.arch")
    assert sorted(old.params) == sorted(graph.params)
    np.testing.assert_array_equal(run_graph(old, params, {"x": x})["output"], got)


def test_self_attention_through_a_two_axis_block(tmp_path):
    """`Attend[q, k]` attends from one sequence to another; bound `[seq, seq]` it attends a
    sequence to itself: `x` becomes `q` in one argument and `k` in the other."""
    graph = build("""
axis batch, seq, embed = 4

block Attend[q, k](x: f32[batch, q, embed], memory: f32[batch, k, embed]) -> f32[batch, q, embed] {
  a = softmax((x @ memory over embed) over k)
  return (a @ memory over k)
}

model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {
  return Attend[seq, seq](x, x)
}
""", tmp_path)
    x = np.random.default_rng(3).standard_normal((2, 5, 4)).astype(np.float32)
    got = run_both(graph, {}, {"x": x}, tmp_path)["output"]
    s = np.einsum("bqe,bke->bqk", x.astype(np.float64), x)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    assert np.abs(got - np.einsum("bqk,bke->bqe", a, x)).max() < 1e-5


@pytest.mark.parametrize("binding, arg", [
    ("c, k3, h, w, h, w", "sum(x over w)"),
    ("c, k3, h, w, h, w", "sum(x over h)"),
    ("c, k3, h, w, h, w", "sum(x over c)"),
    ("c, k3, w, h, h, w", "sum(x over w)"),
    ("c, k3, h, w, w, h", "sum(x over h)"),
    ("c, k3, oh, ow, h, w", "x"),
    ("c, k3, h, w, oh, ow", "rename(x, h -> oh)"),
])
def test_missing_axis_message_never_lists_that_axis(binding, arg, tmp_path):
    """The message once read "needs axis `h`, but this value has [batch, c, h, w]"."""
    source = CONVS + f"""
axis oh ~ h, ow ~ w
model M(x: f32[batch, c, h, w]) -> f32[batch, c, h, w] {{
  return DW[{binding}]({arg}) as dw
}}
"""
    with pytest.raises(CompileError) as e:
        build(source, tmp_path)
    messages = [d.message for d in e.value.diagnostics]
    for m in messages:
        if "needs axis" in m:
            wanted = m.split("needs axis `")[1].split("`")[0]
            listed = [s.strip() for s in m.split("this value has [")[1].split("]")[0].split(",")]
            assert wanted not in listed, m


# ---- calls without a name prefix -------------------------------------------------------------

INLINE = """
use "nn"
axis batch, embed = 4, hidden = 8

block Layer(x: f32[batch, embed]) -> f32[batch, embed] {
  x = LayerNorm[embed](x) as ln
  return x + Linear[hidden, embed](gelu(Linear[embed, hidden](x) as fc1)) as fc2
}

model M(x: f32[batch, embed]) -> f32[batch, embed] {
  y = repeat 2 Layer(x) as "h.{i}"
  return Linear[embed, embed](y) as head
}
"""

FACTORED = """
use "nn"
axis batch, embed = 4, hidden = 8

block FeedForward(x: f32[batch, embed]) -> f32[batch, embed] {
  return x + Linear[hidden, embed](gelu(Linear[embed, hidden](x) as fc1)) as fc2
}

block Layer(x: f32[batch, embed]) -> f32[batch, embed] {
  x = LayerNorm[embed](x) as ln
  return FeedForward(x) as ""
}

block Head(y: f32[batch, embed]) -> f32[batch, embed] {
  return Linear[embed, embed](y) as head
}

model M(x: f32[batch, embed]) -> f32[batch, embed] {
  y = repeat 2 Layer(x) as "h.{i}"
  return Head(y) as ""
}
"""


def test_unprefixed_call_binds_the_inlined_names(tmp_path):
    inline, factored = build(INLINE, tmp_path, "inline.arch"), build(FACTORED, tmp_path, "factored.arch")
    assert list(factored.params) == list(inline.params)
    assert "h.1.fc2.weight" in factored.params and "head.bias" in factored.params
    params = noisy_params(inline)
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run_both(factored, params, {"x": x}, tmp_path)["output"],
                                  run_graph(inline, params, {"x": x})["output"])


def test_unprefixed_call_keeps_a_block_path_for_diagrams(tmp_path):
    graph = build(FACTORED, tmp_path)
    scopes = {n.scope for n in graph.nodes if n.op == "param" and n.attrs["name"] == "h.0.fc1.weight"}
    (scope,) = scopes
    assert scope.path == ("h.0", "feed_forward", "fc1") and scope.block == ("Layer", "FeedForward", "Linear")
    assert scope.prefix == ("h.0", "fc1")
    diagram = build_diagram(graph, depth=3)
    titles = {g.title for g in diagram.groups}
    assert any(t.startswith("FeedForward · ") for t in titles), titles
    assert any(t.startswith("Head · ") for t in titles), titles


def test_unprefixed_names_reach_stored_names_and_scans(tmp_path):
    graph = build("""
axis batch, seq, hidden = 3

block Cell(h: f32[batch, hidden], x: f32[batch, hidden]) -> (h: f32[batch, hidden], y: f32[batch, hidden]) {
  param decay: [hidden] = constant(0.5) from "cell_decay"
  h = h * decay + x
  return h, h
}

model M(x: f32[batch, seq, hidden], h0: f32[batch, hidden]) -> f32[batch, seq, hidden] {
  _h, ys = scan seq Cell(h0, x) as ""
  return ys
}
""", tmp_path)
    assert list(graph.params) == ["decay"] and graph.params["decay"].source_name == "cell_decay"


def test_as_empty_string_is_not_the_default_name(tmp_path):
    """`as ""` once fell back to the block's snake_case name."""
    both = "axis batch, embed = 2\nblock Scale(x: f32[batch, embed]) -> f32[batch, embed] {\n" \
           "  param g: [embed] = ones\n  return x * g\n}\n"
    named = build(both + "model M(x: f32[batch, embed]) -> f32[batch, embed] {\n  return Scale(x)\n}\n", tmp_path)
    bare = build(both + "model M(x: f32[batch, embed]) -> f32[batch, embed] {\n  return Scale(x) as \"\"\n}\n",
                 tmp_path)
    assert list(named.params) == ["scale.g"] and list(bare.params) == ["g"]
