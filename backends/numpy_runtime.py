"""Kernels of the NumPy reference backend.

Generated modules copy the functions they use from this file, so it imports numpy and
nothing else, and each function reads as the definition of its op.
"""
import numpy as np


def cast(x, dtype):
    return np.asarray(x).astype(dtype)


def scalar(x, dtype):
    return np.asarray(x, dtype=dtype)


def relu(x):
    return np.maximum(x, np.zeros((), x.dtype))


def sigmoid(x):
    return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def silu(x):
    return x * sigmoid(x)


def softplus(x):
    return np.logaddexp(np.zeros((), x.dtype), x)


def rsqrt(x):
    return (1 / np.sqrt(x.astype(np.float64))).astype(x.dtype)


def erf(x):
    # Numerical Recipes' erfc (Chebyshev fit, relative error < 1.2e-7), evaluated in float64.
    z = np.abs(x.astype(np.float64))
    t = 1 / (1 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(-z * z + poly)
    return np.where(x >= 0, 1 - erfc, erfc - 1).astype(x.dtype)


def gelu(x):
    return (0.5 * x * (1 + erf(x / np.sqrt(2).astype(x.dtype)))).astype(x.dtype)


def gelu_tanh(x):
    x64 = x.astype(np.float64)
    return (0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)))).astype(x.dtype)


def softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def layernorm(x, weight=None, bias=None, *, axis, eps):
    mean = np.mean(x, axis=axis, keepdims=True)
    var = np.mean(np.square(x - mean), axis=axis, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.asarray(eps, x.dtype))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def rmsnorm(x, weight=None, *, axis, eps):
    ms = np.mean(np.square(x), axis=axis, keepdims=True)
    y = x / np.sqrt(ms + np.asarray(eps, x.dtype))
    return (y * weight if weight is not None else y).astype(x.dtype)


def batchnorm(x, weight, bias, mean, var, *, eps):
    return ((x - mean) / np.sqrt(var + np.asarray(eps, x.dtype)) * weight + bias).astype(x.dtype)


def slice_axis(x, axis, start, end, step):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, end, step)
    return x[tuple(index)]


def causal_mask(n_query, n_key):
    allowed = np.arange(n_key)[None, :] <= np.arange(n_query)[:, None]
    return np.where(allowed, np.float32(0), np.float32(-np.inf))


def topk(x, k, axis, largest=True):
    """The k largest (or smallest) entries along `axis`, best first, and their positions;
    ties go to the lower position (as ONNX TopK). Sorting the reversed axis stably and
    reading the order backwards gives descending values with ties in ascending position,
    for every dtype (negating would wrap unsigned integers)."""
    n = x.shape[axis]
    if not 1 <= k <= n:
        raise ValueError(f"topk: k is {k} but the axis has {n} entries")
    if largest:
        order = n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    return np.take_along_axis(x, idx, axis=axis), idx


def attention(q, k, v, bias=None, *, scale, batch, causal=None):
    """softmax(q·k * scale + bias [+ causal mask]) · v, as two matmuls.

    q is laid out (batch..., query..., depth...), k (batch..., key, depth...), v (batch...,
    key, value...), with `batch` leading dims that broadcast; bias broadcasts against the
    scores (batch..., query..., key). `causal`: which query dim is the position axis, masked
    where key > query. Returns (batch..., query..., value...)."""
    n_depth = k.ndim - batch - 1
    lead = np.broadcast_shapes(q.shape[:batch], k.shape[:batch], v.shape[:batch])
    query = q.shape[batch:q.ndim - n_depth]
    depth = int(np.prod(q.shape[q.ndim - n_depth:], dtype=np.int64))
    n_key = k.shape[batch]
    qm = q.reshape(q.shape[:batch] + (int(np.prod(query, dtype=np.int64)), depth))
    km = k.reshape(k.shape[:batch] + (n_key, depth))
    scores = np.matmul(qm * np.asarray(scale, q.dtype), np.swapaxes(km, -1, -2))
    scores = scores.reshape(lead + query + (n_key,))
    if bias is not None:
        scores = scores + bias
    if causal is not None:
        positions = np.arange(query[causal]).reshape((-1,) + (1,) * (len(query) - causal - 1) + (1,))
        scores = np.where(np.arange(n_key) <= positions, scores, np.asarray(-np.inf, scores.dtype))
    e = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    probs = e / np.sum(e, axis=-1, keepdims=True)
    value = v.shape[batch + 1:]
    vm = v.reshape(v.shape[:batch] + (n_key, int(np.prod(value, dtype=np.int64))))
    out = np.matmul(probs.reshape(lead + (int(np.prod(query, dtype=np.int64)), n_key)), vm)
    return out.reshape(lead + query + value)


def rotary(x, cos, sin, *, axis):
    """Rotary position embedding: the halves x1, x2 of `x` along `axis` (size 2) become
    x1 * cos - x2 * sin and x2 * cos + x1 * sin; `cos` and `sin` broadcast against a half."""
    x1, x2 = np.take(x, 0, axis=axis), np.take(x, 1, axis=axis)
    return np.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=axis)


def scatter_reduce(values, index, shape, reduction):
    """Each slice values[i] (along the first axis) reduced into out[index[i]]; positions no
    index names are 0. reduction: "sum", "mean" or "max"."""
    index = np.asarray(index, dtype=np.int64)
    if index.size and (index.min() < -shape[0] or index.max() >= shape[0]):
        raise IndexError(f"scatter index out of range for an axis of size {shape[0]}")
    if reduction == "max":
        low = np.finfo(values.dtype).min if values.dtype.kind == "f" else np.iinfo(values.dtype).min
        out = np.full(shape, low, dtype=values.dtype)
        np.maximum.at(out, index, values)
        reached = np.zeros(shape[0], dtype=bool)
        reached[index] = True
        out[~reached] = 0
        return out
    out = np.zeros(shape, dtype=values.dtype)
    np.add.at(out, index, values)
    if reduction == "mean":
        counts = np.maximum(np.bincount(index % shape[0], minlength=shape[0]), 1).astype(values.dtype)
        out = out / counts.reshape((-1,) + (1,) * (len(shape) - 1))
    return out
