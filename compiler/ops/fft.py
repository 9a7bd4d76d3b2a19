"""Fourier transforms along a named axis: the real-input DFT and its inverse.

`re, im = rfft(x, seq -> freq)` is numpy.fft.rfft along `seq`: |freq| = |seq| // 2 + 1
frequencies, as two real tensors (there is no complex dtype). `y = irfft(re, im, freq ->
seq)` is numpy.fft.irfft with n = |seq|, so the target axis must be known (declared, or
given by `n=`). Normalisation is numpy's default ("backward"): none forward, 1/n inverse.

ONNX lowers both to `DFT` (opset 17: `axis` attribute; opset 20+: `axis` input). ONNX has
no one-sided inverse, so `irfft` rebuilds the full Hermitian spectrum X[n-k] = conj(X[k])
and keeps the real part of its inverse transform; that also drops the imaginary parts of
the DC and Nyquist bins, as numpy does.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from archlang.grammar import ast as A

from ..axes import FLOAT_DTYPES, Size, TensorType
from ..diagnostics import error
from .registry import OpDef, numpy_dtype, register, require_axes, same_dtype
from .reshape import axis_maps, check_keywords, kw, new_axis


def half_spectrum(n: Size) -> Optional[Size]:
    """|freq| = n // 2 + 1 for a signal of length n; None when a symbolic n may be odd."""
    if n.is_static:
        return Size.of(n.value // 2 + 1)
    half = n.divide(Size.of(2))  # exact for 2*seq; seq/2 (fractional) may not be whole
    if half is None or any(c.denominator != 1 for _, c in half.terms):
        return None
    return half + Size.of(1)


def _check_float(t: TensorType, op: str, what: str, span) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise error(f"`{op}` needs a float {what}, not {t.dtype}", span, "convert it with `cast(x, f32)`")


def _odd_error(op: str, axis: str, size: Size, span):
    return error(f"`{op}` along `{axis}` needs |{axis}| // 2 + 1 frequencies, but |{axis}| = {size} is "
                 "symbolic and may be odd", span,
                 "give a fixed length with `n=`, or transform an axis of fixed or even size (like 2*seq)")


def _lengths(freq: Size) -> str:
    """The two signal lengths whose one-sided spectrum has `freq` bins."""
    if freq.is_static:
        return f"{2 * freq.value - 2} or {2 * freq.value - 1}" if freq.value > 1 else "1"
    return f"2*({freq}) - 2 or 2*({freq}) - 1"


def _length(b, call) -> Optional[int]:
    n = kw(b, call, "n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise error("`n` (the transform length) must be a positive integer", call.span)
    return n


def _dft(g, x: str, axis: int, length: str = "", **attrs) -> str:
    """ONNX DFT along `axis` of x (whose last dim is 1 for real, 2 for complex input)."""
    if g.opset >= 20:
        return g.node("DFT", [x, length, g.const(np.asarray(axis, np.int64))], **attrs)
    return g.node("DFT", [x, length] if length else [x], axis=axis, **attrs)


def _part(g, y: str, last: int, i: int) -> str:
    """The real (i=0) or imaginary (i=1) part of a DFT result, dropping its last dim."""
    return g.node("Gather", [y, g.const(np.asarray(i, np.int64))], axis=last)


def _arguments(call, op: str, n_tensors: int, usage: str):
    """The tensor arguments and the one `axis -> new_axis` map of a transform (keyword: `n=`)."""
    check_keywords(call, ("n",), op)
    maps = axis_maps(call)
    pos = [a for a in call.args if not isinstance(a, (A.Keyword, A.AxisMap))]
    if len(maps) != 1 or len(pos) != n_tensors or len(maps[0].source) != 1 or len(maps[0].target) != 1 or call.over:
        raise error(f"`{op}` takes {usage}", call.span)
    return pos, maps[0]


@register
class Rfft(OpDef):
    name = "rfft"
    summary = ("real-input DFT along one axis, as numpy.fft.rfft: `re, im = rfft(x, seq -> freq)` gives "
               "|freq| = |seq| // 2 + 1 frequencies as real and imaginary parts; `n=` zero-pads or "
               "truncates `seq` to that length first")
    example = "re, im = rfft(x, seq -> freq)"

    def build(self, b, call):
        pos, m = _arguments(call, "rfft", 1, "a tensor and `axis -> new_axis`, as in `re, im = rfft(x, seq -> freq)`")
        x = b.tensor(pos[0])
        require_axes(x.type, m.source, "the transformed tensor", m.span)
        n = _length(b, call)
        size = Size.of(n) if n is not None else x.type.axis(m.source[0]).size
        freq = half_spectrum(size)
        if freq is None:
            raise _odd_error("rfft", m.source[0], size, m.span)
        into = new_axis(b, m.target[0], freq, m.span)
        attrs = {"axis": m.source[0], "into": into} | ({"n": n} if n is not None else {})
        return b.emit("rfft", [x], attrs, call.span)

    def infer(self, ins, attrs, span):
        x, into = ins[0], attrs["into"]
        _check_float(x, "rfft", "tensor", span)
        require_axes(x, [attrs["axis"]], "the transformed tensor", span)
        if x.has(into.name):
            raise error(f"the tensor already has an axis `{into.name}`", span)
        size = Size.of(attrs["n"]) if "n" in attrs else x.axis(attrs["axis"]).size
        if half_spectrum(size) != into.size:
            raise error(f"`{into.name}` is {into.size}, but the spectrum of {size} points has "
                        f"{half_spectrum(size)} frequencies", span)
        p = x.position(attrs["axis"])
        out = x.with_axes(x.axes[:p] + (into,) + x.axes[p + 1:])
        return [out, out]

    def numpy(self, e, node, ins):
        p = node.inputs[0].type.position(node.attrs["axis"])
        n = {"n": node.attrs["n"]} if "n" in node.attrs else {}
        return e.unpack(e.call("rfft_parts", ins[0], p, **n), 2)

    def onnx(self, g, node, ins):
        t = node.inputs[0].type
        r, p = len(t.axes), t.position(node.attrs["axis"])
        x = g.node("Unsqueeze", [ins[0], g.const_i64([r])])  # real input: a trailing dim of 1
        n = g.const(np.asarray(node.attrs["n"], np.int64)) if "n" in node.attrs else ""
        y = _dft(g, x, p, n, onesided=1)
        return [_part(g, y, r, 0), _part(g, y, r, 1)]


@register
class Irfft(OpDef):
    name = "irfft"
    summary = ("inverse of `rfft`, as numpy.fft.irfft: `y = irfft(re, im, freq -> seq)` is real along "
               "`seq`, whose size n must be known (declared, or `n=`) and satisfy |freq| = n // 2 + 1")
    example = "y = irfft(re, im, freq -> seq)"

    def build(self, b, call):
        pos, m = _arguments(call, "irfft", 2, "the real and imaginary parts and `freq -> axis`, as in "
                                              "`y = irfft(re, im, freq -> seq)`")
        re, im = b.tensor(pos[0]), b.tensor(pos[1])
        require_axes(re.type, m.source, "the real part", m.span)
        require_axes(im.type, m.source, "the imaginary part", m.span)
        n, target = _length(b, call), m.target[0]
        if target in b.env.axes:
            into = b.env.axes[target]
            if n is not None and into.size != Size.of(n):
                raise error(f"`n={n}` but `{target}` is {into.size}", call.span, "leave out `n=` for a declared axis")
        elif n is not None:
            into = new_axis(b, target, Size.of(n), m.span)
        else:
            f = re.type.axis(m.source[0]).size
            raise error(f"`irfft` cannot tell the length of `{target}`: |{m.source[0]}| = {f} fits "
                        f"{_lengths(f)} points", m.span, f"declare `axis {target} = ...` or give the length with `n=`")
        return b.emit("irfft", [re, im], {"axis": m.source[0], "into": into}, call.span)

    def infer(self, ins, attrs, span):
        re, im = ins
        same_dtype(ins, "irfft", span)
        _check_float(re, "irfft", "spectrum", span)
        if not re.same_axes(im):
            raise error(f"`irfft` needs the real and imaginary parts on the same axes, not {re} and {im}", span)
        axis, into = attrs["axis"], attrs["into"]
        require_axes(re, [axis], "the real part", span)
        if re.has(into.name):
            raise error(f"the spectrum already has an axis `{into.name}`", span)
        want, have = half_spectrum(into.size), re.axis(axis).size
        if want is None:
            raise _odd_error("irfft", into.name, into.size, span)
        if want != have:
            raise error(f"`irfft` to `{into.name}` (size {into.size}) needs `{axis}` of size "
                        f"{into.size} // 2 + 1 = {want}, but `{axis}` is {have}", span,
                        f"a spectrum of {have} frequencies comes from {_lengths(have)} points")
        p = re.position(axis)
        return [re.with_axes(re.axes[:p] + (into,) + re.axes[p + 1:])]

    def numpy(self, e, node, ins):
        t = node.inputs[0].type
        im = e.align(ins[1], node.inputs[1].type, t.names)
        return [e.call("irfft_real", ins[0], im, e.size(node.attrs["into"].size), t.position(node.attrs["axis"]))]

    def onnx(self, g, node, ins):
        t = node.inputs[0].type
        r, p = len(t.axes), t.position(node.attrs["axis"])
        last = g.const_i64([r])
        im = g.align(ins[1], node.inputs[1].type, t.names)
        x = g.node("Concat", [g.node("Unsqueeze", [ins[0], last]), g.node("Unsqueeze", [im, last])], axis=r)
        # The missing bins k = m .. n-1 are conj(X[n-k]): X[n-m], ..., X[1], conjugated. The
        # inverse is computed as real(DFT(conj(full))) / n: onnxruntime 1.32's inverse DFT in
        # f64 loses precision (about 3e-8) for lengths that are not a power of two.
        x_conj = g.node("Mul", [x, g.const(np.asarray([1, -1], dtype=numpy_dtype(t.dtype)))])
        n = node.attrs["into"].size
        missing = n - t.axis(node.attrs["axis"]).size
        if missing != Size.of(0):
            mirror = g.node("Slice", [x, g.size(missing), g.const_i64([0]), g.const_i64([p]), g.const_i64([-1])])
            x_conj = g.node("Concat", [x_conj, mirror], axis=p)
        y = _part(g, _dft(g, x_conj, p, onesided=0), r, 0)
        if n.is_static:
            count = g.scalar(n.value, t.dtype)
        else:
            count = g.node("Cast", [g.node("Reshape", [g.size(n), g.const_i64([])])], to=g.dtype(t.dtype))
        return [g.node("Div", [y, count])]
