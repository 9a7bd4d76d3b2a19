"""Parameter tensors: seeded initializers, and binding a weights file by hierarchical name."""
from __future__ import annotations

import math
import os
import zlib
from typing import Optional

import numpy as np

from .axes import FLOAT_DTYPES
from .diagnostics import CompileError, Diagnostic
from .ir import Graph, ParamSpec
from .ops.registry import numpy_dtype
from .weights_file import WeightsFile, open_weights


def _shape(spec: ParamSpec) -> tuple[int, ...]:
    return tuple(a.size.value for a in spec.type.axes)


def _fans(spec: ParamSpec, fan_in: Optional[int]) -> tuple[int, int]:
    shape = dict(zip(spec.type.names, _shape(spec)))
    total = math.prod(shape.values()) or 1
    if fan_in:
        return fan_in, max(total // fan_in, 1)
    dims = list(shape.values())
    if len(dims) < 2:
        return total, total
    return math.prod(dims[:-1]), math.prod(dims[1:])


def initialize(spec: ParamSpec, seed: int) -> np.ndarray:
    """The initial value of one parameter; each has its own stream, keyed by its name."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    shape = _shape(spec)
    kind, args, kwargs = spec.init
    fan_in, fan_out = _fans(spec, kwargs.get("fan_in"))
    if kind == "zeros":
        out = np.zeros(shape)
    elif kind == "ones":
        out = np.ones(shape)
    elif kind == "constant":
        out = np.full(shape, args[0])
    elif kind == "normal":
        mean, std = (0.0, args[0]) if len(args) == 1 else args
        out = rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean)
    elif kind == "uniform":
        lo, hi = args if args else (-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        out = rng.uniform(lo, hi, shape)
    elif kind == "xavier":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        out = rng.uniform(-bound, bound, shape)
    elif kind == "kaiming":
        out = rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in))
    else:
        raise ValueError(kind)
    return np.require(stored_as(out, spec.type.dtype), requirements="C")


def stored_as(array: np.ndarray, dtype: str) -> np.ndarray:
    """A parameter's array as the backends hold it: in its dtype, except bf16, which NumPy lacks:
    float32 holding bfloat16 values (rounded to nearest even)."""
    if dtype != "bf16":
        return array.astype(numpy_dtype(dtype), copy=False)
    if array.dtype.name == "bfloat16":
        return array.astype(np.float32)
    import ml_dtypes
    return array.astype(ml_dtypes.bfloat16).astype(np.float32)


def initialize_all(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    """Every parameter's initial value. Each has its own random stream, so the values do not
    depend on the order of drawing and the draws can run on all cores (numpy releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor
    specs = list(graph.params.values())
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        values = list(pool.map(lambda spec: initialize(spec, seed), specs))
    return {spec.name: v for spec, v in zip(specs, values)}


def stored_shape(spec: ParamSpec) -> tuple[int, ...]:
    """The shape a weights file holds this parameter in (its `as [...]` layout, if any)."""
    if spec.layout is None:
        return _shape(spec)
    sizes = dict(zip(spec.type.names, _shape(spec)))
    return tuple(math.prod(sizes[a] for a in group) for group in spec.layout)


def from_stored(spec: ParamSpec, array: np.ndarray, contiguous: bool = True) -> np.ndarray:
    """Stored layout -> the declared axis order (split merged groups, then transpose). With
    `contiguous` false a transpose stays a view of the stored bytes (for --weights-link)."""
    if spec.layout is None:
        return array
    sizes = dict(zip(spec.type.names, _shape(spec)))
    flat = [a for group in spec.layout for a in group]
    split = array.reshape([sizes[a] for a in flat])
    view = np.transpose(split, [flat.index(a) for a in spec.type.names])
    return np.ascontiguousarray(view) if contiguous else view


def bind_weights(graph: Graph, weights: WeightsFile, contiguous: bool = True) -> dict[str, np.ndarray]:
    """Match file tensors to parameters by name. Every mismatch is found from the headers and
    reported in one error before any tensor data is read."""
    missing, misshaped, wrong_dtype = [], [], []
    wanted: dict[str, ParamSpec] = {}
    for name, spec in graph.params.items():
        key = spec.source_name
        if key not in weights.entries:
            missing.append(f"{key} {list(stored_shape(spec))}")
            continue
        shape, dtype = weights.entries[key]
        want = stored_shape(spec)
        if tuple(shape) != want:
            misshaped.append(f"{key}: expected {list(want)}, found {list(shape)}")
        elif dtype != numpy_dtype(spec.type.dtype).name and not (
                spec.type.dtype in FLOAT_DTYPES and dtype in ("float16", "bfloat16", "float32", "float64")):
            wrong_dtype.append(f"{key}: expected {spec.type.dtype}, found {dtype}")
        else:
            wanted[name] = spec
    unexpected = sorted(set(weights.entries) - {s.source_name for s in graph.params.values()})
    if missing or misshaped or unexpected or wrong_dtype:
        lines = [f"{weights.path} does not fit this model"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("mis-shaped", misshaped), ("wrong dtype", wrong_dtype)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {i}" for i in items[:50]]
                if len(items) > 50:
                    lines.append(f"    … and {len(items) - 50} more")
        raise CompileError(Diagnostic("\n".join(lines), None))
    out = {}
    for name, spec in wanted.items():
        arr = weights.load(spec.source_name)
        if contiguous or not (spec.type.dtype == "bf16" and arr.dtype.name == "bfloat16"):
            arr = stored_as(arr, spec.type.dtype)  # (for --weights-link a bf16 tensor stays as stored)
        out[name] = from_stored(spec, arr, contiguous)
    return out


def load_weights(graph: Graph, path: str, link: bool = False) -> dict[str, np.ndarray]:
    """The parameters bound from `path`. A .safetensors file's tensors are views of its mapping;
    with `link` (for --weights-link) a stored layout that is a transpose stays a view too, so the
    ONNX writer can refer to the stored bytes instead of copying them."""
    if link and not path.endswith(".safetensors"):
        raise CompileError(Diagnostic(f"--weights-link needs a .safetensors file, not {path}: an .npz archive's "
                                      "tensors cannot be referred to in place", None))
    weights = open_weights(path)
    try:
        return bind_weights(graph, weights, contiguous=not link)
    finally:
        weights.close()
