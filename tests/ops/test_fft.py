"""`rfft` and `irfft` (compiler/ops/fft.py) against numpy.fft, through every backend.

Each program runs through tests/ops/test_core_ops.py's `check`: the NumPy backend, then
onnxruntime at opsets 23 and 17 (where ONNX `DFT` takes `axis` as an input and as an
attribute), then the generated module. The NumPy backend is compared with numpy.fft
computed here in float64; onnxruntime transforms in the input's precision, so f32
comparisons allow for f32 rounding of sums of |n| terms.
"""
from __future__ import annotations

import re
import zlib

import numpy as np
import onnx
import pytest

from archlang.backends.numpy_codegen import emit_module
from archlang.backends.onnx_export import to_onnx
from test_core_ops import check, close, compile_arch, compile_error, f64

# onnxruntime's f32 DFT vs the NumPy kernels (float64, rounded once): for lengths that are
# not a power of two it runs Bluestein's algorithm, off by up to ~3e-6 of the largest value.
F32_TOL = dict(atol=1e-4, rtol=1e-5)
F64_TOL = dict(atol=1e-12, rtol=1e-12)
DTYPES = {"f32": (np.float32, F32_TOL), "f64": (np.float64, F64_TOL)}


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n", [1, 2, 7, 8, 12, 33])
def test_rfft_matches_numpy(n, dtype, tmp_path):
    """Along a middle axis, odd and even lengths; |freq| = n // 2 + 1 is declared by the op."""
    np_dtype, tol = DTYPES[dtype]
    src = f"""
        axis batch
        axis n = {n}, chan = 3
        model M(x: {dtype}[batch, n, chan]) -> (re: {dtype}[batch, freq, chan], im: {dtype}[chan, freq, batch]) {{
          re, im = rfft(x, n -> freq)
          return re, im
        }}
    """
    rng = rng_for(n, dtype)
    xs = [rng.standard_normal((b, n, 3)).astype(np_dtype) for b in (2, 1)]
    res = check(src, [{"x": x} for x in xs], module_dir=tmp_path, **tol)
    for out, x in zip(res.outputs, xs):
        want = np.fft.rfft(f64(x), axis=1)
        assert out["re"].shape == (len(x), n // 2 + 1, 3)
        close(out["re"], want.real, **F64_TOL if dtype == "f64" else dict(atol=1e-6, rtol=1e-6))
        close(out["im"], want.imag.transpose(2, 1, 0), **F64_TOL if dtype == "f64" else dict(atol=1e-6, rtol=1e-6))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n", [1, 2, 7, 8, 12, 33])
def test_irfft_matches_numpy(n, dtype, tmp_path):
    """Any spectrum, including imaginary parts on the DC and Nyquist bins, which irfft
    ignores as numpy does; the imaginary part comes in another axis order."""
    np_dtype, tol = DTYPES[dtype]
    m = n // 2 + 1
    src = f"""
        axis batch
        axis n = {n}, freq = {m}, chan = 3
        model M(re: {dtype}[batch, freq, chan], im: {dtype}[chan, batch, freq]) -> {dtype}[batch, n, chan] {{
          return irfft(re, im, freq -> n)
        }}
    """
    rng = rng_for(n, dtype, "irfft")
    runs = [{"re": rng.standard_normal((b, m, 3)).astype(np_dtype),
             "im": rng.standard_normal((3, b, m)).astype(np_dtype)} for b in (2, 1)]
    res = check(src, runs, module_dir=tmp_path, **tol)
    for got, r in zip(res.outs(), runs):
        want = np.fft.irfft(f64(r["re"]) + 1j * f64(r["im"]).transpose(1, 2, 0), n=n, axis=1)
        close(got, want, **F64_TOL if dtype == "f64" else dict(atol=1e-6, rtol=1e-6))


@pytest.mark.parametrize("n", [5, 6, 64])
def test_round_trip(n):
    src = f"""
        axis batch
        axis seq = {n}, chan = 2
        model M(x: f64[batch, chan, seq]) -> f64[batch, chan, seq] {{
          re, im = rfft(x, seq -> freq)
          return irfft(re, im, freq -> seq)
        }}
    """
    x = rng_for(n).standard_normal((2, 2, n))
    res = check(src, {"x": x}, **F64_TOL)
    close(res.out, x, **F64_TOL)


def test_length_keyword_pads_or_truncates_a_symbolic_axis(tmp_path):
    """`n=` fixes the transform length whatever |seq| is at run time (shorter: zero-padded;
    longer: truncated); `irfft(..., n=)` declares the new axis it returns to."""
    src = """
        axis batch, seq
        model M(x: f32[batch, seq]) -> (re: f32[batch, freq], im: f32[batch, freq], y: f32[batch, ten]) {
          re, im = rfft(x, seq -> freq, n=10)
          y = irfft(re, im, freq -> ten, n=10)
          return re, im, y
        }
    """
    rng = rng_for("n=")
    xs = [rng.standard_normal((2, s)).astype(np.float32) for s in (4, 10, 13)]
    res = check(src, [{"x": x} for x in xs], module_dir=tmp_path, **F32_TOL)
    for out, x in zip(res.outputs, xs):
        want = np.fft.rfft(f64(x), n=10, axis=1)
        close(out["re"], want.real, atol=1e-6, rtol=1e-6)
        close(out["im"], want.imag, atol=1e-6, rtol=1e-6)
        close(out["y"], np.fft.irfft(want, n=10, axis=1), atol=1e-6, rtol=1e-6)


def test_symbolic_axis_of_even_size():
    """|both| = 2*seq is even for every seq, so |freq| = seq + 1: the ONNX dims are named."""
    src = """
        axis batch, seq, key ~ seq
        axis chan = 3
        model M(x: f32[batch, seq, chan]) -> (re: f32[batch, freq, chan], y: f32[batch, both, chan]) {
          xx = concat(x, rename(x, seq -> key) * 0.5 over (seq, key) -> both)
          re, im = rfft(xx, both -> freq)
          y = irfft(re, im, freq -> both)
          return re, y
        }
    """
    rng = rng_for("symbolic")
    xs = [rng.standard_normal((2, s, 3)).astype(np.float32) for s in (1, 2, 3, 8)]
    res = check(src, [{"x": x} for x in xs], **F32_TOL)
    for out, x in zip(res.outputs, xs):
        both = np.concatenate([f64(x), 0.5 * f64(x)], axis=1)
        close(out["re"], np.fft.rfft(both, axis=1).real, atol=1e-6, rtol=1e-6)
        close(out["y"], both, atol=1e-6, rtol=1e-6)
    model = to_onnx(res.graph, res.params)
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    assert dims == [["batch", "seq+1", 3], ["batch", "2*seq", 3]]


def test_f16():
    src = """
        axis batch
        axis seq = 16
        model M(x: f16[batch, seq]) -> (re: f16[batch, freq], y: f16[batch, seq]) {
          re, im = rfft(x, seq -> freq)
          return re, irfft(re, im, freq -> seq)
        }
    """
    x = rng_for("f16").standard_normal((2, 16)).astype(np.float16)
    res = check(src, {"x": x}, atol=2e-2, rtol=1e-2)
    close(res.outputs[0]["re"], np.fft.rfft(f64(x), axis=1).real, atol=1e-2, rtol=1e-2)
    close(res.outputs[0]["y"], x, atol=1e-2, rtol=1e-2)


def test_onnx_uses_dft_at_each_opset():
    """Opset 17 gives `axis` as an attribute, opset 20+ as an input; one DFT per transform."""
    graph = compile_arch("""
        axis n = 6
        model M(x: f32[n]) -> f32[n] {
          re, im = rfft(x, n -> freq)
          return irfft(re, im, freq -> n)
        }
    """)
    for opset, attrs, n_inputs in ((17, {"axis", "onesided"}, 1), (23, {"onesided"}, 3)):
        model = to_onnx(graph, {}, opset=opset)
        onnx.checker.check_model(model, full_check=True)
        dfts = [node for node in model.graph.node if node.op_type == "DFT"]
        assert len(dfts) == 2
        assert {a.name for a in dfts[0].attribute} == attrs
        assert len(dfts[0].input) == n_inputs


def test_generated_module_transforms_once_for_both_parts():
    graph = compile_arch("""
        axis n = 8
        model M(x: f32[n]) -> (re: f32[freq], im: f32[freq]) {
          re, im = rfft(x, n -> freq)
          return re, im
        }
    """)
    body = emit_module(graph).split("\ndef m(")[1]
    assert len(re.findall(r"\brfft_parts\(", body)) == 1


# ---- type errors ------------------------------------------------------------------

ERRORS = {
    "int input": ("""
        axis n = 8
        model M(x: i64[n]) -> f32[freq] {
          re, im = rfft(x, n -> freq)
          return re
        }""", ["`rfft` needs a float tensor, not i64"]),
    "wrong spectrum size": ("""
        axis n = 8, m = 10
        model M(x: f32[n]) -> f32[m] {
          re, im = rfft(x, n -> freq)
          return irfft(re, im, freq -> m)
        }""", ["`irfft` to `m` (size 10) needs `freq` of size 10 // 2 + 1 = 6, but `freq` is 5"]),
    "declared spectrum axis of the wrong size": ("""
        axis n = 8, freq = 4
        model M(x: f32[n]) -> f32[freq] {
          re, im = rfft(x, n -> freq)
          return re
        }""", ["`freq` size 5", "declared as 4"]),
    "unknown length": ("""
        axis n = 8
        model M(x: f32[n]) -> f32[n] {
          re, im = rfft(x, n -> freq)
          return irfft(re, im, freq -> t)
        }""", ["cannot tell the length of `t`", "8 or 9"]),
    "symbolic axis that may be odd": ("""
        axis seq
        model M(x: f32[seq]) -> f32[freq] {
          re, im = rfft(x, seq -> freq)
          return re
        }""", ["`rfft` along `seq` needs |seq| // 2 + 1 frequencies", "may be odd"]),
    "parts on different axes": ("""
        axis n = 8, c = 2
        model M(x: f32[n], z: f32[c]) -> f32[c, n] {
          re, im = rfft(x, n -> freq)
          return irfft(re, im * z, freq -> n)
        }""", ["same axes", "f32[freq]", "f32[freq, c]"]),
    "missing axis": ("""
        axis n = 8, c = 2
        model M(x: f32[n]) -> f32[freq] {
          re, im = rfft(x, c -> freq)
          return re
        }""", ["no axis `c`"]),
    "length disagrees with the declared axis": ("""
        axis n = 8
        model M(x: f32[n]) -> f32[n] {
          re, im = rfft(x, n -> freq)
          return irfft(re, im, freq -> n, n=9)
        }""", ["`n=9` but `n` is 8"]),
    "not a length": ("""
        axis n = 8
        model M(x: f32[n]) -> f32[freq] {
          re, im = rfft(x, n -> freq, n=0)
          return re
        }""", ["must be a positive integer"]),
    "no axis map": ("""
        axis n = 8
        model M(x: f32[n]) -> f32[n] {
          re, im = rfft(x)
          return re
        }""", ["`rfft` takes a tensor and `axis -> new_axis`"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_type_errors(case):
    src, wanted = ERRORS[case]
    message = str(compile_error(src))
    for w in wanted:
        assert w in message, f"{case}: {w!r} not in {message!r}"
