"""Reading weights files that may be corrupt or hostile.

Only headers are read until the file is known to fit the model: names, shapes and dtypes
are checked first, and a tensor's bytes are read only once its declared shape is the one
the model expects (so a small compressed .npz cannot inflate gigabytes of unwanted data).
Nothing is ever unpickled.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib import format as npy

from .diagnostics import CompileError, Diagnostic

SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a stored tensor; bfloat16 is ml_dtypes' (numpy has none)."""
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class WeightsFile:
    """`entries`: name -> (shape, dtype name), from headers only; `load(name)` reads one tensor."""

    def __init__(self, path: str, entries: dict[str, tuple[tuple[int, ...], str]],
                 load: Callable[[str], np.ndarray], close: Callable[[], None]):
        self.path, self.entries, self._load, self.close = path, entries, load, close

    def load(self, name: str) -> np.ndarray:
        try:
            return self._load(name)
        except CompileError:
            raise
        except Exception as e:  # corrupt data behind a valid header
            raise fail(self.path, f"tensor `{name}` cannot be read: {e}") from None


def fail(path: str, why: str) -> CompileError:
    return CompileError(Diagnostic(f"cannot read weights file {path}: {why}", None))


def open_weights(path: str) -> WeightsFile:
    p = Path(path)
    if p.suffix not in (".safetensors", ".npz"):
        raise CompileError(Diagnostic(f"weights file {path}: expected a .safetensors or .npz file", None))
    if not p.exists():
        raise CompileError(Diagnostic(f"weights file not found: {path}", None))
    if not p.is_file():
        raise fail(path, "it is not a regular file")
    try:
        return _open_safetensors(path) if p.suffix == ".safetensors" else _open_npz(path)
    except CompileError:
        raise
    except Exception as e:  # a corrupt or hostile file: report, never crash
        raise fail(path, str(e).splitlines()[0] if str(e) else e.__class__.__name__) from None


def _open_safetensors(path: str) -> WeightsFile:
    from safetensors import safe_open
    handle = safe_open(path, framework="numpy")  # validates the header against the file size
    f = handle.__enter__()
    entries = {}
    for name in f.keys():
        sl = f.get_slice(name)
        dtype = sl.get_dtype()
        entries[name] = (tuple(sl.get_shape()), SAFETENSORS_DTYPES.get(dtype, dtype))
    spans = _safetensors_spans(path, entries)
    # Tensors are read-only views of one mapping of the file: binding copies nothing, writing an
    # ONNX file reads the bytes once, and --weights-link finds each tensor's offset from its view.
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if spans else None

    def load(name: str) -> np.ndarray:
        shape, dtype = entries[name]
        if name not in spans:  # a dtype archc does not know: safetensors converts it
            return f.get_tensor(name)
        start, end = spans[name]
        return mapped[start:end].view(numpy_dtype(dtype).newbyteorder("<")).reshape(shape)

    return WeightsFile(path, entries, load, lambda: handle.__exit__(None, None, None))


def _safetensors_spans(path: str, entries: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, tuple[int, int]]:
    """Where each tensor's bytes lie in the file, as (start, end) from the file's start: an 8-byte
    little-endian header length, the JSON header, then the data, which the header's
    `data_offsets` count from. Only tensors numpy has a dtype for; safe_open has already checked
    every span against the file, and each is checked again against its shape here."""
    import json
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    spans = {}
    for name, (shape, dtype) in entries.items():
        if dtype not in SAFETENSORS_DTYPES.values():
            continue
        begin, end = header[name]["data_offsets"]
        if end - begin != math.prod(shape) * numpy_dtype(dtype).itemsize:
            raise fail(path, f"tensor `{name}` holds {end - begin} bytes, not what its shape needs")
        spans[name] = (8 + header_len + begin, 8 + header_len + end)
    return spans


def _open_npz(path: str) -> WeightsFile:
    if not zipfile.is_zipfile(path):
        raise fail(path, "not an .npz archive")
    archive = zipfile.ZipFile(path)
    entries, members = {}, {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise fail(path, f"member `{info.filename}` is not a .npy array")
        with archive.open(info) as f:
            version = npy.read_magic(f)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(f)
        if dtype.hasobject:
            raise fail(path, f"`{info.filename}` holds Python objects, which archc never unpickles")
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise fail(path, f"`{info.filename}` declares more data than the archive holds")
        name = info.filename[:-4]
        entries[name] = (tuple(shape), dtype.name)
        members[name] = info

    def load(name: str) -> np.ndarray:
        with archive.open(members[name]) as f:
            return npy.read_array(f, allow_pickle=False)

    return WeightsFile(path, entries, load, archive.close)
