"""Writing ONNX files fast and atomically.

Serialising half a gigabyte of weights through protobuf costs seconds, so weights never
enter the protobuf messages: the graph is serialised without them and each initializer's
`raw_data` field is written straight from the array, with the enclosing messages' lengths
computed by hand (protobuf fields may come in any order). Past protobuf's 2 GB limit the
tensors go to one external data file beside the model, under a fixed name.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from archlang.compiler.files import atomic_output

PROTOBUF_LIMIT = 2 * 1024 ** 3 - 64 * 1024 ** 2  # leave room for the graph itself
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field."""
    return _varint(number << 3 | 2) + _varint(length)


def _little_endian(arr: np.ndarray) -> np.ndarray:
    arr = np.require(arr, requirements="C")
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False) if arr.dtype.byteorder == ">" else arr


def _header(name: str, arr: np.ndarray) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
    t.dims.extend(arr.shape)
    return t


def data_name(model_path: str) -> str:
    return Path(model_path).name + ".data"


def _write_embedded(f: BinaryIO, model: onnx.ModelProto, tensors: Mapping[str, np.ndarray]) -> None:
    pieces = []
    for name, arr in tensors.items():
        arr = _little_endian(arr)
        head = _header(name, arr).SerializeToString()
        body_len = len(head) + len(_field(_TENSOR_RAW_DATA, arr.nbytes)) + arr.nbytes
        pieces.append((head, arr, body_len))
    shell = onnx.ModelProto()
    shell.CopyFrom(model)
    graph_bytes = shell.graph.SerializeToString()
    shell.ClearField("graph")
    graph_len = len(graph_bytes) + sum(len(_field(_GRAPH_INITIALIZER, n)) + n for _, _, n in pieces)
    f.write(shell.SerializeToString())
    f.write(_field(_MODEL_GRAPH, graph_len))
    f.write(graph_bytes)
    for head, arr, body_len in pieces:
        f.write(_field(_GRAPH_INITIALIZER, body_len))
        f.write(head)
        f.write(_field(_TENSOR_RAW_DATA, arr.nbytes))
        f.write(memoryview(arr.reshape(-1)).cast("B") if arr.size else b"")


def _write_external(model_f: BinaryIO, data_f: BinaryIO, location: str, model: onnx.ModelProto,
                    tensors: Mapping[str, np.ndarray]) -> None:
    shell = onnx.ModelProto()
    shell.CopyFrom(model)
    offset = 0
    for name, arr in tensors.items():
        arr = _little_endian(arr)
        t = _header(name, arr)
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(arr.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        shell.graph.initializer.append(t)
        data_f.write(memoryview(arr.reshape(-1)).cast("B") if arr.size else b"")
        offset += arr.nbytes
        pad = -offset % 4096  # page-aligned offsets let onnxruntime map tensors directly
        data_f.write(b"\0" * pad)
        offset += pad
    model_f.write(shell.SerializeToString())


def write_model(model: onnx.ModelProto, tensors: Mapping[str, np.ndarray], path: str) -> None:
    """Write `model` plus `tensors` as initializers; any previous file survives a failure."""
    total = sum(a.nbytes for a in tensors.values())
    with atomic_output(path) as (f, out):
        if total <= PROTOBUF_LIMIT:
            _write_embedded(f, model, tensors)
            stale = out.parent / data_name(path)  # from an earlier, larger compile to this path
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
        else:
            with atomic_output(str(out.parent / data_name(path))) as (d, _):
                _write_external(f, d, data_name(path), model, tensors)
