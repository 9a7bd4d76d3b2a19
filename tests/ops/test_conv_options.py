"""Per-axis and asymmetric convolution options, and `padding=same` with a stride, against
PyTorch: `torch.nn.functional.conv2d` / `conv_transpose2d` on an input padded (or an output
cropped) explicitly with `F.pad`, so the reference never goes through archc's own padding
rule. Each program runs on the NumPy backend and on onnxruntime. The standard library's one
`Conv2d` (bias on or off, stride, padding incl. `same`) is checked against `nn.Conv2d`.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-5


def run_both(tmp_path, text: str, inputs: dict) -> tuple[dict, dict, dict]:
    """NumPy and onnxruntime outputs, and the random parameters they ran with."""
    path = tmp_path / "model.arch"
    path.write_text(textwrap.dedent(text))
    graph = load_graph(str(path), SourceCache())
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in load_params(graph, None, 0).items()}
    got_np = run_graph(graph, params, inputs)
    onnx_path = tmp_path / "model.onnx"
    onnx.save(to_onnx(graph, params, 23), str(onnx_path))
    onnx.checker.check_model(str(onnx_path), full_check=True)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_ort = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    return got_np, got_ort, params


def check(got_np, got_ort, name, want):
    for got in (got_np[name], got_ort[name]):
        assert got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


X = np.random.default_rng(1).standard_normal((2, 3, 9, 8)).astype(np.float32)


@pytest.mark.parametrize("keywords, stride, dilation, pads", [
    # pads: ((top, bottom), (left, right))
    ("stride=(2, 1), dilation=(1, 2), padding=((0, 1), (2, 1))", (2, 1), (1, 2), ((0, 1), (2, 1))),
    ("stride=2, padding=(1, 0)", (2, 2), (1, 1), ((1, 1), (0, 0))),
    ("stride=(1, 3), padding=((2, 0), 1)", (1, 3), (1, 1), ((2, 0), (1, 1))),
    ("dilation=(2, 1), padding=valid", (1, 1), (2, 1), ((0, 0), (0, 0))),
])
def test_per_axis_and_asymmetric_conv(tmp_path, keywords, stride, dilation, pads):
    kh, kw = 3, 2
    oh = (9 + sum(pads[0]) - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (8 + sum(pads[1]) - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    text = f"""
        axis batch
        axis c = 3, o = 4, h = 9, w = 8, kh = {kh}, kw = {kw}
        model M(x: f32[batch, c, h, w]) -> f32[batch, o, oh, ow] {{
          param weight: [o, c, kh, kw]
          param bias: [o]
          return conv(x, weight, bias, {keywords} over (h, w) -> (oh, ow))
        }}
    """
    got_np, got_ort, p = run_both(tmp_path, text, {"x": X})
    padded = F.pad(t(X), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    want = F.conv2d(padded, t(p["weight"]), t(p["bias"]), stride=stride, dilation=dilation).numpy()
    assert want.shape[2:] == (oh, ow)
    check(got_np, got_ort, "output", want)


@pytest.mark.parametrize("k, stride, dilation", [(3, 2, 1), (4, 2, 1), (3, 3, 1), (2, 2, 2), (5, (2, 3), 1)])
def test_same_with_stride_is_tensorflows(tmp_path, k, stride, dilation):
    """TensorFlow's SAME: ceil(n / s) positions out; the padding it needs, split with the odd unit at the end."""
    s = stride if isinstance(stride, tuple) else (stride, stride)
    written = f"({s[0]}, {s[1]})" if isinstance(stride, tuple) else str(stride)
    text = f"""
        axis batch
        axis c = 3, o = 4, h = 9, w = 8, k = {k}, kw ~ k
        model M(x: f32[batch, c, h, w]) -> f32[batch, o, oh, ow] {{
          param weight: [o, c, k, kw]
          return conv(x, weight, stride={written}, dilation={dilation}, padding=same over (h, w) -> (oh, ow))
        }}
    """
    got_np, got_ort, p = run_both(tmp_path, text, {"x": X})
    pads = []
    for n, si in zip((9, 8), s):
        out = math.ceil(n / si)
        total = max((out - 1) * si + dilation * (k - 1) + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    padded = F.pad(t(X), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    want = F.conv2d(padded, t(p["weight"]), stride=s, dilation=dilation).numpy()
    assert want.shape[2:] == (math.ceil(9 / s[0]), math.ceil(8 / s[1]))
    check(got_np, got_ort, "output", want)


def test_conv_transpose_per_axis_and_asymmetric(tmp_path):
    text = """
        axis batch
        axis c = 3, o = 2, h = 9, w = 8, kh = 3, kw = 2
        model M(x: f32[batch, c, h, w]) -> f32[batch, o, oh, ow] {
          param weight: [c, o, kh, kw]
          param bias: [o]
          return conv_transpose(x, weight, bias, stride=(2, 3), padding=((1, 0), (0, 2)), output_padding=(1, 2),
                                dilation=(1, 2) over (h, w) -> (oh, ow))
        }
    """
    got_np, got_ort, p = run_both(tmp_path, text, {"x": X})
    full = F.conv_transpose2d(t(X), t(p["weight"]), t(p["bias"]), stride=(2, 3), output_padding=(1, 2),
                              dilation=(1, 2)).numpy()
    want = full[:, :, 1:full.shape[2], 0:full.shape[3] - 2]  # crop: top 1, right 2
    check(got_np, got_ort, "output", want)


def test_conv1d_padding_pair_is_before_after(tmp_path):
    text = """
        axis batch
        axis c = 3, o = 2, t = 10, k = 3
        model M(x: f32[batch, c, t]) -> f32[batch, o, ot] {
          param weight: [o, c, k]
          return conv(x, weight, padding=(2, 0) over t -> ot)
        }
    """
    x = np.random.default_rng(2).standard_normal((2, 3, 10)).astype(np.float32)
    got_np, got_ort, p = run_both(tmp_path, text, {"x": x})
    want = F.conv1d(F.pad(t(x), (2, 0)), t(p["weight"])).numpy()  # causal: all padding before
    check(got_np, got_ort, "output", want)


def test_stdlib_conv2d_options_match_torch(tmp_path):
    """One `Conv2d` block: bias on and off, a stride, padding=same (stride 1: torch's own
    `padding="same"`; stride 2: TensorFlow's, against F.pad), parameters named as torch's."""
    text = """
        use "conv"
        axis batch
        axis c = 3, d = 4, h = 9, w = 8, k3 = 3, h2 = 5, w2 = 4, h3 = 5, w3 = 4
        model M(x: f32[batch, c, h, w]) -> (kept: f32[batch, d, h, w], strided: f32[batch, d, h2, w2],
                                            plain: f32[batch, d, h3, w3]) {
          kept = Conv2d[c, d, k3, h, w, h, w, padding="same"](x) as a
          strided = Conv2d[c, d, k3, h, w, h2, w2, stride=2, padding=same, bias=false](x) as b
          plain = Conv2d[c, d, k3, h, w, h3, w3, stride=(2, 2), padding=(1, 1), bias=false](x) as "c"
          return kept, strided, plain
        }
    """
    got_np, got_ort, p = run_both(tmp_path, text, {"x": X})
    assert set(p) == {"a.weight", "a.bias", "b.weight", "c.weight"}
    a = torch.nn.Conv2d(3, 4, 3, padding="same")
    b = torch.nn.Conv2d(3, 4, 3, stride=2, bias=False)
    c = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    for name, m in (("a", a), ("b", b), ("c", c)):
        m.load_state_dict({k.split(".", 1)[1]: t(v) for k, v in p.items() if k.startswith(name + ".")})
    with torch.no_grad():
        check(got_np, got_ort, "kept", a(t(X)).numpy())
        check(got_np, got_ort, "strided", b(F.pad(t(X), (0, 1, 1, 1))).numpy())  # h 9: 1+1; w 8: 0+1
        check(got_np, got_ort, "plain", c(t(X)).numpy())


def test_stdlib_conv2d_groups_and_dilation_match_torch(tmp_path):
    text = """
        use "conv"
        axis batch
        axis c = 4, d = 6, h = 9, w = 8, k3 = 3
        model M(x: f32[batch, c, h, w]) -> f32[batch, d, h, w] {
          return Conv2d[c, d, k3, h, w, h, w, groups=2, dilation=(1, 2), padding=(1, 2)](x) as g
        }
    """
    x = np.random.default_rng(3).standard_normal((2, 4, 9, 8)).astype(np.float32)
    got_np, got_ort, p = run_both(tmp_path, text, {"x": x})
    m = torch.nn.Conv2d(4, 6, 3, groups=2, dilation=(1, 2), padding=(1, 2))
    m.load_state_dict({"weight": t(p["g.weight"]), "bias": t(p["g.bias"])})
    with torch.no_grad():
        check(got_np, got_ort, "output", m(t(x)).numpy())
