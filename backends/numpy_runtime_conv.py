"""NumPy kernels for convolution, pooling and resampling (numpy its only import).

Each kernel is the definition of its op, not an approximation. Layout: spatial axes are
the trailing axes, in the order the op names them; convolutions also take the channel
axis just before them (`[..., C, *spatial]`); any leading axes are batch axes. Padding
is given per spatial axis as `(begin, end)`. Generated modules copy these functions.
"""
import numpy as np


def conv_windows(x, kernel, stride, dilation):
    """Every (strided, dilated) kernel window over the trailing len(kernel) axes of `x`.

    Returns a view shaped [..., *out, *kernel], out_i = (n_i - d_i (k_i - 1) - 1) // s_i + 1.
    """
    nd = len(kernel)
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    view = np.lib.stride_tricks.sliding_window_view(x, extent, axis=tuple(range(x.ndim - nd, x.ndim)))
    pick = (Ellipsis,) + tuple(slice(None, None, s) for s in stride) + tuple(slice(None, None, d) for d in dilation)
    return view[pick]


def pad_spatial(x, pads, value=0):
    """Pad the trailing len(pads) axes by (begin, end) each, with a constant."""
    width = ((0, 0),) * (x.ndim - len(pads)) + tuple(tuple(p) for p in pads)
    return np.pad(x, width, constant_values=value)


def conv_nd(x, w, bias, stride, pads, dilation, groups):
    """Convolution as in PyTorch and ONNX Conv (a cross-correlation).

    x: [..., C, *spatial]; w: [F, C / groups, *kernel]; bias: [F] or None. Input channel
    group g (C / groups channels) feeds output channels g*F/groups ... (g+1)*F/groups - 1.
    y[n, f, o] = bias[f] + sum over c in f's group and kernel offsets k of
                 w[f, c, k] * x_padded[n, c, o * stride + k * dilation].
    """
    nd = w.ndim - 2
    lead = x.shape[:x.ndim - nd - 1]
    x = pad_spatial(x.reshape((-1,) + x.shape[x.ndim - nd - 1:]), pads)
    n, c = x.shape[:2]
    f = w.shape[0]
    win = conv_windows(x, w.shape[2:], stride, dilation)  # [N, C, *out, *kernel]
    win = win.reshape((n, groups, c // groups) + win.shape[2:])
    wg = w.reshape((groups, f // groups) + w.shape[1:])  # [G, F/G, C/G, *kernel]
    o, k = "uvw"[:nd], "ijk"[:nd]
    # Sums of products are accumulated in float64, then rounded once to x's dtype.
    y = np.einsum(f"ngc{o}{k},gfc{k}->ngf{o}", win.astype(np.float64), wg.astype(np.float64), optimize=True)
    y = y.reshape((n, f) + y.shape[3:])
    if bias is not None:
        y = y + bias.reshape((f,) + (1,) * nd)
    return y.reshape(lead + y.shape[1:]).astype(x.dtype)


def conv_transpose_nd(x, w, bias, stride, pads, output_padding, dilation, groups):
    """Transposed convolution as in PyTorch ConvTranspose and ONNX ConvTranspose.

    x: [..., C, *spatial]; w: [C, F / groups, *kernel]. Each input position i scatters
    x[n, c, i] * w[c, f, k] into the output at i * stride + k * dilation; then `pads`
    crop the result. Output size: s (n - 1) + d (k - 1) + 1 + output_padding - begin - end.
    """
    nd = w.ndim - 2
    lead = x.shape[:x.ndim - nd - 1]
    x = x.reshape((-1,) + x.shape[x.ndim - nd - 1:])
    n, c = x.shape[:2]
    fg, kernel, size = w.shape[1], w.shape[2:], x.shape[2:]
    full = tuple(s * (m - 1) + d * (k - 1) + 1 + p
                 for m, k, s, d, p in zip(size, kernel, stride, dilation, output_padding))
    y = np.zeros((n, groups, fg) + full)  # accumulated in float64, rounded once at the end
    xg = x.reshape((n, groups, c // groups) + size).astype(np.float64)
    wg = w.reshape((groups, c // groups, fg) + kernel).astype(np.float64)
    i = "uvw"[:nd]
    for offset in np.ndindex(*kernel):
        part = np.einsum(f"ngc{i},gcf->ngf{i}", xg, wg[(slice(None),) * 3 + offset])
        at = tuple(slice(k * d, k * d + s * (m - 1) + 1, s) for k, d, s, m in zip(offset, dilation, stride, size))
        y[(slice(None),) * 3 + at] += part
    y = y.reshape((n, groups * fg) + full)
    y = y[(slice(None),) * 2 + tuple(slice(b, m - e) for (b, e), m in zip(pads, full))]
    if bias is not None:
        y = y + bias.reshape((groups * fg,) + (1,) * nd)
    return y.reshape(lead + y.shape[1:]).astype(x.dtype)


def max_pool_nd(x, kernel, stride, pads):
    """The maximum over each window of the trailing axes; padding never wins."""
    nd = len(kernel)
    low = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    win = conv_windows(pad_spatial(x, pads, low), kernel, stride, (1,) * nd)
    return np.max(win, axis=tuple(range(-nd, 0)))


def avg_pool_nd(x, kernel, stride, pads, count_include_pad):
    """The mean over each window of the trailing axes, padding with zeros.

    count_include_pad: divide by the whole window (PyTorch's default), else by the number
    of input elements in it (ONNX's default).
    """
    nd = len(kernel)
    ones = (1,) * nd
    total = np.sum(conv_windows(pad_spatial(x, pads), kernel, stride, ones), axis=tuple(range(-nd, 0)))
    if count_include_pad:
        count = np.prod(kernel)
    else:
        inside = pad_spatial(np.ones(x.shape[x.ndim - nd:]), pads)
        count = np.sum(conv_windows(inside, kernel, stride, ones), axis=tuple(range(-nd, 0)))
    return (total / count).astype(x.dtype)


def upsample_nearest(x, scale):
    """Repeat each element `scale` times along each trailing axis: out[i] = x[floor(i / scale)]."""
    for axis, s in zip(range(x.ndim - len(scale), x.ndim), scale):
        x = np.repeat(x, s, axis=axis)
    return x


def upsample_linear(x, scale):
    """Linear interpolation along each trailing axis (bilinear in 2-d), half-pixel centres.

    Output position i samples the input at max(0, (i + 0.5) / scale - 0.5), clamped to the
    last element: PyTorch's align_corners=False, ONNX Resize's "half_pixel".
    """
    for axis, s in zip(range(x.ndim - len(scale), x.ndim), scale):
        n = x.shape[axis]
        src = np.clip((np.arange(n * s) + 0.5) / s - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        t = (src - i0).astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1 - axis))
        x = np.take(x, i0, axis=axis) * (1 - t) + np.take(x, i1, axis=axis) * t
    return x
