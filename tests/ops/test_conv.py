"""The convolution family: conv, conv_transpose, maxpool, avgpool, upsample.

Each program runs three ways: the NumPy backend, onnxruntime on the exported model
(checked with `full_check`), and a naive reference written here with plain loops over
output positions (no sliding windows, no einsum), so the kernels are not checked
against themselves.
"""
from __future__ import annotations

import ast as pyast
import importlib.util
import re
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from archlang.backends.numpy_codegen import emit_module, run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.diagnostics import CompileError, SourceCache
from archlang.compiler.driver import load_graph, load_params

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-5


# ---- running a program three ways ------------------------------------------------

def build(tmp_path, text):
    path = tmp_path / "model.arch"
    path.write_text(textwrap.dedent(text))
    return load_graph(str(path), SourceCache())


def random_params(graph, seed=0):
    rng = np.random.default_rng(seed)
    params = load_params(graph, None, seed)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def run_onnx(tmp_path, graph, params, inputs, opset):
    path = tmp_path / f"model_{opset}.onnx"
    onnx.save(to_onnx(graph, params, opset), str(path))
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


def three_ways(tmp_path, text, inputs, reference, opsets=(23,)):
    """Run NumPy and ONNX; `reference(params, inputs)` is the naive result."""
    graph = build(tmp_path, text)
    params = random_params(graph)
    got = run_graph(graph, params, inputs)["output"]
    want = reference(params, inputs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    for opset in opsets:
        np.testing.assert_allclose(run_onnx(tmp_path, graph, params, inputs, opset)["output"], got, atol=TOL, rtol=0)
    return graph, params, got


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- naive references: loops over output positions ---------------------------

def naive_conv(x, w, b=None, stride=1, pad=0, dil=1, groups=1):
    """x [N, C, *S], w [F, C/groups, *K]; pad: int or per-axis (begin, end) pairs."""
    nd = w.ndim - 2
    pads = [(pad, pad)] * nd if isinstance(pad, int) else pad
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(pads))
    n_, c_ = x.shape[:2]
    f_, cg = w.shape[0], w.shape[1]
    fg = f_ // groups
    out = [(xp.shape[2 + i] - dil * (w.shape[2 + i] - 1) - 1) // stride + 1 for i in range(nd)]
    y = np.zeros([n_, f_] + out)
    for n in range(n_):
        for f in range(f_):
            g = f // fg
            for o in np.ndindex(*out):
                win = tuple(slice(o[i] * stride, o[i] * stride + dil * (w.shape[2 + i] - 1) + 1, dil)
                            for i in range(nd))
                patch = xp[(n, slice(g * cg, (g + 1) * cg)) + win]
                y[(n, f) + o] = np.sum(patch * w[f]) + (b[f] if b is not None else 0)
    return y


def naive_conv_transpose(x, w, b=None, stride=1, pad=0, out_pad=0, groups=1):
    """x [N, C, *S], w [C, F/groups, *K]: each input element scatters a scaled kernel."""
    nd = w.ndim - 2
    n_, c_ = x.shape[:2]
    cg, fg = c_ // groups, w.shape[1]
    full = [stride * (x.shape[2 + i] - 1) + w.shape[2 + i] + out_pad for i in range(nd)]
    y = np.zeros([n_, fg * groups] + full)
    for n in range(n_):
        for c in range(c_):
            g = c // cg
            for i in np.ndindex(*x.shape[2:]):
                at = tuple(slice(i[a] * stride, i[a] * stride + w.shape[2 + a]) for a in range(nd))
                y[(n, slice(g * fg, (g + 1) * fg)) + at] += x[(n, c) + i] * w[c]
    y = y[(slice(None), slice(None)) + tuple(slice(pad, m - pad) for m in full)]
    return y + (b.reshape([-1] + [1] * nd) if b is not None else 0)


def naive_pool(x, k, s, p, kind, include_pad=True):
    """Pooling over the trailing 2 axes; windows are clipped to the input (padding ignored)."""
    h, w = x.shape[-2:]
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    y = np.zeros(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - p, j * s - p
            win = x[..., max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w)]
            if kind == "max":
                y[..., i, j] = win.max(axis=(-2, -1))
            else:
                y[..., i, j] = win.sum(axis=(-2, -1)) / (k * k if include_pad else win.shape[-1] * win.shape[-2])
    return y


def naive_linear_index(i, scale, n):
    """PyTorch's align_corners=False source coordinate: two neighbours and a weight."""
    src = max((i + 0.5) / scale - 0.5, 0.0)
    i0 = min(int(src), n - 1)
    i1 = i0 + 1 if i0 < n - 1 else i0
    return i0, i1, src - i0


def naive_upsample(x, scale, mode):
    """Over the trailing 2 axes."""
    h, w = x.shape[-2:]
    y = np.zeros(x.shape[:-2] + (h * scale, w * scale))
    for i in range(h * scale):
        for j in range(w * scale):
            if mode == "nearest":
                y[..., i, j] = x[..., i // scale, j // scale]
                continue
            r0, r1, a = naive_linear_index(i, scale, h)
            c0, c1, t = naive_linear_index(j, scale, w)
            y[..., i, j] = ((1 - a) * ((1 - t) * x[..., r0, c0] + t * x[..., r0, c1])
                            + a * ((1 - t) * x[..., r1, c0] + t * x[..., r1, c1]))
    return y


# ---- conv ------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [17, 23])
def test_conv2d_stride_padding_bias(tmp_path, opset):
    text = """
        axis batch
        axis c = 3, d = 4, h = 9, w = 8, kh = 3, kw = 3
        model M(x: f32[batch, c, h, w]) -> f32[batch, d, oh, ow] {
          param weight: [d, c, kh, kw]
          param bias: [d]
          return conv(x, weight, bias, stride=2, padding=1 over (h, w) -> (oh, ow))
        }
    """
    x = rand(2, 3, 9, 8)
    _, _, y = three_ways(tmp_path, text, {"x": x},
                         lambda p, i: naive_conv(i["x"], p["weight"], p["bias"], stride=2, pad=1), (opset,))
    assert y.shape == (2, 4, 5, 4)


def test_conv2d_dilation_same_padding_any_layout(tmp_path):
    # Channel last, spatial axes swapped, two batch axes (one between the spatial ones).
    text = """
        axis b1, b2
        axis c = 2, d = 3, h = 7, w = 6, kh = 3, kw = 2
        model M(x: f32[b1, w, b2, h, c]) -> f32[b1, w, b2, h, d] {
          param weight: [d, c, kh, kw]
          return conv(x, weight, dilation=2, padding=same over (h, w) -> (h, w))
        }
    """
    x = rand(2, 6, 3, 7, 2)

    def ref(p, i):
        nchw = i["x"].transpose(0, 2, 4, 3, 1).reshape(6, 2, 7, 6)  # [b1*b2, c, h, w]
        # "same" with dilation 2: kh extent 5 pads 2+2, kw extent 3 pads 1+1.
        y = naive_conv(nchw, p["weight"], dil=2, pad=[(2, 2), (1, 1)])
        return y.reshape(2, 3, 3, 7, 6).transpose(0, 4, 1, 3, 2)
    three_ways(tmp_path, text, {"x": x}, ref)


def test_conv_same_even_kernel_pads_the_end(tmp_path):
    text = """
        axis c = 2, h = 6, w = 5, k = 4, kw = 2
        model M(x: f32[c, h, w]) -> f32[c, h, w] {
          axis o ~ c
          param weight: [o, c, k, kw]
          return rename(conv(x, weight, padding=same over (h, w) -> (h, w)), o -> c)
        }
    """
    x = rand(2, 6, 5)
    three_ways(tmp_path, text, {"x": x},
               lambda p, i: naive_conv(i["x"][None], p["weight"], pad=[(1, 2), (0, 1)])[0])


@pytest.mark.parametrize("opset", [17, 23])
def test_grouped_conv_needs_channels(tmp_path, opset):
    text = """
        axis batch
        axis c = 4, cg = 2, d = 6, h = 5, w = 5, kh = 3, kw = 3
        model M(x: f32[batch, c, h, w]) -> f32[batch, d, oh, ow] {
          param weight: [d, cg, kh, kw]
          param bias: [d]
          return conv(x, weight, bias, groups=2, channels=c over (h, w) -> (oh, ow))
        }
    """
    x = rand(2, 4, 5, 5)
    three_ways(tmp_path, text, {"x": x},
               lambda p, i: naive_conv(i["x"], p["weight"], p["bias"], groups=2), (opset,))


def test_depthwise_conv(tmp_path):
    text = """
        axis batch
        axis c = 3, one = 1, h = 6, w = 6, kh = 3, kw = 3
        model M(x: f32[batch, h, w, c]) -> f32[batch, oh, ow, c] {
          param weight: [c, one, kh, kw]
          return conv(x, weight, stride=2, padding=1 over (h, w) -> (oh, ow))
        }
    """
    x = rand(2, 6, 6, 3)
    three_ways(tmp_path, text, {"x": x},
               lambda p, i: naive_conv(i["x"].transpose(0, 3, 1, 2), p["weight"], stride=2, pad=1,
                                       groups=3).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("opset", [17, 23])
def test_conv1d_over_time(tmp_path, opset):
    text = """
        axis batch
        axis c = 3, d = 2, t = 11, k = 3
        model M(x: f32[batch, t, c]) -> f32[batch, ot, d] {
          param weight: [d, c, k]
          param bias: [d]
          return conv(x, weight, bias, stride=2, dilation=2, padding=1 over t -> ot)
        }
    """
    x = rand(2, 11, 3)
    three_ways(tmp_path, text, {"x": x},
               lambda p, i: naive_conv(i["x"].transpose(0, 2, 1), p["weight"], p["bias"], stride=2, pad=1,
                                       dil=2).transpose(0, 2, 1), (opset,))


def test_conv3d(tmp_path):
    text = """
        axis c = 2, d = 3, z = 4, h = 5, w = 4, kz = 2, kh = 3, kw = 3
        model M(x: f32[c, z, h, w]) -> f32[d, oz, oh, ow] {
          param weight: [d, c, kz, kh, kw]
          return conv(x, weight, padding=1 over (z, h, w) -> (oz, oh, ow))
        }
    """
    x = rand(2, 4, 5, 4)
    three_ways(tmp_path, text, {"x": x}, lambda p, i: naive_conv(i["x"][None], p["weight"], pad=1)[0])


# ---- conv_transpose -------------------------------------------------------------

@pytest.mark.parametrize("opset", [17, 23])
def test_conv_transpose(tmp_path, opset):
    text = """
        axis batch
        axis c = 3, d = 2, h = 4, w = 5, kh = 3, kw = 3
        model M(x: f32[batch, c, h, w]) -> f32[batch, d, oh, ow] {
          param weight: [c, d, kh, kw]
          param bias: [d]
          return conv_transpose(x, weight, bias, stride=2, padding=1, output_padding=1 over (h, w) -> (oh, ow))
        }
    """
    x = rand(2, 3, 4, 5)
    _, _, y = three_ways(tmp_path, text, {"x": x},
                         lambda p, i: naive_conv_transpose(i["x"], p["weight"], p["bias"], stride=2, pad=1,
                                                           out_pad=1), (opset,))
    assert y.shape == (2, 2, 8, 10)


def test_conv_transpose_grouped_keeps_channels(tmp_path):
    text = """
        axis c = 4, half = 2, h = 3, w = 3, kh = 2, kw = 2
        model M(x: f32[h, w, c]) -> f32[oh, ow, c] {
          param weight: [c, half, kh, kw]
          return conv_transpose(x, weight, stride=2, groups=2 over (h, w) -> (oh, ow))
        }
    """
    x = rand(3, 3, 4)
    three_ways(tmp_path, text, {"x": x},
               lambda p, i: naive_conv_transpose(i["x"].transpose(2, 0, 1)[None], p["weight"], stride=2,
                                                 groups=2)[0].transpose(1, 2, 0))


# ---- pooling ---------------------------------------------------------------------

@pytest.mark.parametrize("opset", [17, 23])
@pytest.mark.parametrize("call, ref", [
    ("maxpool(x, kernel=3, stride=2, padding=1", lambda x: naive_pool(x, 3, 2, 1, "max")),
    ("avgpool(x, kernel=3, stride=2, padding=1", lambda x: naive_pool(x, 3, 2, 1, "avg")),
    ("avgpool(x, kernel=3, stride=2, padding=1, count_include_pad=0",
     lambda x: naive_pool(x, 3, 2, 1, "avg", include_pad=False)),
    ("avgpool(x, kernel=2", lambda x: naive_pool(x, 2, 2, 0, "avg")),
])
def test_pool(tmp_path, call, ref, opset):
    text = f"""
        axis batch
        axis c = 3, h = 9, w = 8
        model M(x: f32[batch, c, h, w]) -> f32[batch, c, oh, ow] {{
          return {call} over (h, w) -> (oh, ow))
        }}
    """
    x = rand(2, 3, 9, 8)
    three_ways(tmp_path, text, {"x": x}, lambda p, i: ref(i["x"]), (opset,))


def test_pool_three_batch_axes_channel_last(tmp_path):
    text = """
        axis a = 2, b = 2, h = 5, w = 6, c = 3
        model M(x: f32[a, h, b, w, c]) -> f32[a, oh, b, ow, c] {
          return maxpool(x, kernel=2, stride=1 over (h, w) -> (oh, ow))
        }
    """
    x = rand(2, 5, 2, 6, 3)
    three_ways(tmp_path, text, {"x": x},
               lambda p, i: naive_pool(i["x"].transpose(0, 2, 4, 1, 3), 2, 1, 0, "max").transpose(0, 3, 1, 4, 2))


# ---- upsample --------------------------------------------------------------------

@pytest.mark.parametrize("opset", [17, 23])
@pytest.mark.parametrize("mode, scale", [("nearest", 2), ("nearest", 3), ("linear", 2), ("linear", 3)])
def test_upsample(tmp_path, mode, scale, opset):
    text = f"""
        axis batch
        axis c = 2, h = 4, w = 5
        model M(x: f32[batch, c, h, w]) -> f32[batch, c, h2, w2] {{
          return upsample(x, scale={scale}, mode={mode} over (h, w) -> (h2, w2))
        }}
    """
    x = rand(2, 2, 4, 5)
    three_ways(tmp_path, text, {"x": x}, lambda p, i: naive_upsample(i["x"], scale, mode), (opset,))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_1d_channel_last(tmp_path, mode):
    text = f"""
        axis t = 5, c = 3
        model M(x: f32[t, c]) -> f32[t2, c] {{
          return upsample(x, scale=2, mode={mode} over t -> t2)
        }}
    """
    x = rand(5, 3)

    def ref(p, i):  # a 1-d signal is a 2-d one with a single row
        return naive_upsample(i["x"].T[:, None, :], 2, mode)[:, 0::2, :].reshape(3, 10).T
    three_ways(tmp_path, text, {"x": x}, ref)


# ---- type errors -----------------------------------------------------------------

def compile_error(tmp_path, body, decls="axis batch\naxis c = 3, d = 4, h = 8, w = 8, kh = 3, kw = 3\n",
                  result="f32[batch, d, oh, ow]", params="param weight: [d, c, kh, kw]"):
    text = f"{decls}\nmodel M(x: f32[batch, c, h, w]) -> {result} {{\n  {params}\n  {body}\n}}\n"
    with pytest.raises(CompileError) as info:
        build(tmp_path, text)
    return info.value.diagnostics[0]


def test_declared_output_axis_of_wrong_size(tmp_path):
    d = compile_error(tmp_path, "return conv(x, weight, stride=2, padding=1 over (h, w) -> (oh, ow))",
                      decls="axis batch\naxis c = 3, d = 4, h = 8, w = 8, kh = 3, kw = 3, oh = 3, ow = 4\n")
    assert "`oh` is 3" in d.message and "over `h` gives 4" in d.message, d.message
    assert any("`oh` declared here" in text for text, _ in d.notes)


def test_missing_channel_axis_names_the_axes(tmp_path):
    d = compile_error(tmp_path, "return conv(x, weight over (h, w) -> (oh, ow))",
                      params="axis e = 3\n  param weight: [d, e, kh, kw]")
    assert "`e`" in d.message and "`d`" in d.message and "batch, c, h, w" in d.message, d.message
    assert "channels=" in d.help


@pytest.mark.parametrize("body, words", [
    ("return conv(x, weight, stride=(2, 1, 1) over (h, w) -> (oh, ow))", ["3 values", "2 spatial axes"]),
    ("return conv(x, weight, padding=((1, 2, 3), 0) over (h, w) -> (oh, ow))", ["pair (before, after)"]),
    ("return conv(x, weight, padding=full over (h, w) -> (oh, ow))", ["`full`", "same"]),
    ("return conv(x, weight, strides=2 over (h, w) -> (oh, ow))", ["strides"]),
    ("return conv(x, weight over h, w)", ["over"]),
    ("return conv(x, weight over (h, q) -> (oh, ow))", ["`q`"]),
    ("return conv(x, weight, groups=3 over (h, w) -> (oh, ow))", ["groups=3", "`c` is 3"]),
    ("return conv(x, weight, stride=0 over (h, w) -> (oh, ow))", ["stride", "at least 1"]),
    ("return maxpool(x, kernel=2, padding=2 over (h, w) -> (oh, ow))", ["padding", "half"]),
    ("return upsample(x, scale=2, mode=bilinear over (h, w) -> (oh, ow))", ["bilinear"]),
])
def test_bad_calls(tmp_path, body, words):
    d = compile_error(tmp_path, body, result="f32[batch, c, oh, ow]")
    for w in words:
        assert w in d.message, d.message


def test_bias_must_carry_the_output_axis(tmp_path):
    d = compile_error(tmp_path, "return conv(x, weight, bias over (h, w) -> (oh, ow))",
                      params="param weight: [d, c, kh, kw]\n  param bias: [c]")
    assert "bias" in d.message and "`d`" in d.message, d.message


# ---- the standard library and the ResNet example -------------------------------

def test_stdlib_blocks(tmp_path):
    text = """
        use "conv"
        axis batch
        axis c = 3, d = 4, k3 = 3, k2 = 2, h = 8, w = 8, h2 = 4, w2 = 4, t = 10, t2 = 5
        model M(x: f32[batch, c, h, w], s: f32[batch, c, t]) -> (y: f32[batch, d, h, w], z: f32[batch, d, t2]) {
          y = Conv2d[c, d, k3, h, w, h2, w2, stride=2, padding=1](x) as down
          y = ConvTranspose2d[d, c, k2, h2, w2, h, w](y) as up
          y = DepthwiseConv2d[c, k3, h, w](y) as dw
          y = BatchNorm2d[d](Conv2d[c, d, k3, h, w, h, w, padding=same](y) as same) as bn
          z = Conv1d[c, d, k3, t, t2, stride=2, padding=1](s) as seq
          return y, z
        }
    """
    graph = build(tmp_path, text)
    assert {"down.weight", "up.weight", "dw.weight", "same.bias", "bn.running_var", "seq.weight"} <= set(graph.params)
    assert graph.params["up.weight"].type.names == ("cin", "cout", "k", "kw")
    params = random_params(graph)
    params["bn.running_var"] = np.abs(params["bn.running_var"]) + 0.5
    inputs = {"x": rand(2, 3, 8, 8), "s": rand(2, 3, 10)}
    ref = run_graph(graph, params, inputs)
    got = run_onnx(tmp_path, graph, params, inputs, 23)
    for k in ref:  # five layers of unit-normal weights: values reach ~100, so compare relatively
        np.testing.assert_allclose(got[k], ref[k], atol=TOL, rtol=TOL)


def resnet():
    graph = load_graph(str(REPO / "examples" / "resnet.arch"), SourceCache())
    params = load_params(graph, None, 0)
    rng = np.random.default_rng(3)
    for k, v in params.items():  # non-trivial batch-norm statistics
        if k.endswith(("running_mean", "bias")):
            params[k] = rng.normal(0, 0.1, v.shape).astype(np.float32)
        elif k.endswith("running_var") or (v.ndim == 1 and k.endswith("weight")):
            params[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
    return graph, params, {"x": rand(2, 3, 64, 64, seed=4)}


def test_resnet_example_numpy_matches_onnxruntime(tmp_path):
    graph, params, inputs = resnet()
    assert graph.outputs[0][1].type.describe() == "f32[batch, classes=10]"
    assert "layer2.0.downsample.0.weight" in graph.params and "layer1.1.bn2.running_mean" in graph.params
    ref = run_graph(graph, params, inputs)["output"]
    got = run_onnx(tmp_path, graph, params, inputs, 23)["output"]
    assert ref.shape == (2, 10)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)


def test_resnet_generated_module_imports_only_numpy(tmp_path):
    graph, params, inputs = resnet()
    source = emit_module(graph, "resnet.arch")
    imports = {a.name for n in pyast.walk(pyast.parse(source)) if isinstance(n, (pyast.Import, pyast.ImportFrom))
               for a in (n.names if isinstance(n, pyast.Import) else [pyast.alias(n.module or "")])}
    assert imports == {"numpy"}
    path = tmp_path / "resnet_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("resnet_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, re.findall(r"^def (\w+)\(params", source, re.M)[-1])
    got = fn(params, inputs["x"])["output"]
    np.testing.assert_allclose(got, run_graph(graph, params, inputs)["output"], atol=1e-6, rtol=0)
