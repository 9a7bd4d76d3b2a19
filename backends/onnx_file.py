"""Writing ONNX files fast and atomically.

Serialising half a gigabyte of weights through protobuf costs seconds, so weights never
enter the protobuf messages: the graph is serialised without them and each initializer's
`raw_data` field is written straight from the array, with the enclosing messages' lengths
computed by hand (protobuf fields may come in any order). Past protobuf's 2 GB limit the
tensors go to one external data file beside the model, under a fixed name.

With --weights-link (`linking`), tensors whose bytes already lie in the .safetensors file
are not copied at all: the model refers to them there as ONNX external data (offsets into
the safetensors file itself), the file hard-linked beside the model.
"""
from __future__ import annotations

import contextlib
import errno
import mmap
import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper

from archlang.compiler.diagnostics import CompileError, Diagnostic
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


def _header(name: str, arr: np.ndarray, dims: Optional[tuple[int, ...]] = None) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
    t.dims.extend(arr.shape if dims is None else dims)
    return t


def _external(t: TensorProto, location: str, offset: int, length: int) -> None:
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value


def data_name(model_path: str) -> str:
    return Path(model_path).name + ".data"


def _write_embedded(f: BinaryIO, model: onnx.ModelProto, tensors: Mapping[str, np.ndarray]) -> None:
    pieces = []
    for name, arr in tensors.items():  # made contiguous as each is written: one copy alive at a time
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        head = _header(name, np.empty(0, dtype), arr.shape).SerializeToString()
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
        arr = _little_endian(arr)
        f.write(_field(_GRAPH_INITIALIZER, body_len))
        f.write(head)
        f.write(_field(_TENSOR_RAW_DATA, arr.nbytes))
        f.write(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")  # bytes: bfloat16 has no buffer format


def _write_external(model_f: BinaryIO, data_f: BinaryIO, location: str, model: onnx.ModelProto,
                    tensors: Mapping[str, np.ndarray]) -> None:
    shell = onnx.ModelProto()
    shell.CopyFrom(model)
    offset = 0
    for name, arr in tensors.items():
        arr = _little_endian(arr)
        t = _header(name, arr)
        _external(t, location, offset, arr.nbytes)
        shell.graph.initializer.append(t)
        data_f.write(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")  # bytes: bfloat16 has no buffer format
        offset += arr.nbytes
        pad = -offset % 4096  # page-aligned offsets let onnxruntime map tensors directly
        data_f.write(b"\0" * pad)
        offset += pad
    model_f.write(shell.SerializeToString())


@dataclass
class Link:
    """A --weights-link request, and what came of it: tensors referred to in `weights` as they
    are, referred to with a Transpose in the graph (a stored layout in another axis order),
    and copied (converted dtypes, values computed by the compiler)."""
    weights: str
    linked: int = 0
    transposed: int = 0
    copied: int = 0
    hard_link: Optional[Path] = None  # set when the weights were hard-linked into the output's folder


# compile_to_file (the exporter's) calls write_model; the request reaches the writer here rather
# than through every signature between the command line and the file.
_LINK: ContextVar[Optional[Link]] = ContextVar("archlang_weights_link", default=None)


@contextlib.contextmanager
def linking(weights: str) -> Iterator[Link]:
    """Within the block, write_model refers to tensors that lie in the .safetensors file `weights`
    (parameters bound by `load_weights(..., link=True)`) instead of copying them."""
    link = Link(weights)
    token = _LINK.set(link)
    try:
        yield link
    finally:
        _LINK.reset(token)


def _stored_span(arr: np.ndarray, source: str) -> Optional[tuple[int, tuple[int, ...], Optional[list[int]]]]:
    """(offset in `source`, dims as stored, Transpose perm or None) when `arr` is a view of a
    mapping of `source` whose bytes are contiguous in some axis order; else None."""
    if arr.size == 0 or arr.dtype.byteorder == ">" or arr.dtype.hasobject:
        return None
    root = arr
    while isinstance(root, np.ndarray) and not isinstance(root.base, mmap.mmap):
        root = root.base
    try:
        if not isinstance(root, np.memmap) or not root.filename or not os.path.samefile(root.filename, source):
            return None
    except OSError:  # the weights file went away: copy what was read
        return None
    offset = arr.ctypes.data - root.ctypes.data + root.offset
    if offset < 0 or offset + arr.nbytes > root.offset + root.nbytes:
        return None
    if arr.flags.c_contiguous:
        return offset, arr.shape, None
    order = sorted(range(arr.ndim), key=lambda i: -arr.strides[i])  # stable: equal strides keep their order
    stored = arr.transpose(order)
    if not stored.flags.c_contiguous:
        return None
    return offset, stored.shape, [order.index(i) for i in range(arr.ndim)]


def _place(weights: str, out: Path) -> bool:
    """Make `weights` appear in the model's folder under its own name, by hard link (ONNX refuses
    external data outside the model's folder or behind a symbolic link). True when this call
    created the link."""
    source, target = Path(weights), out.parent / Path(weights).name
    advice = "put the weights on the same filesystem as the output, or drop --weights-link"
    if target.name == out.name:
        raise CompileError(Diagnostic(f"cannot write {out}: it would replace the weights it refers to", None))
    if target.is_symlink():
        raise CompileError(Diagnostic(f"cannot link weights as {target}: it is a symbolic link, and ONNX external "
                                      "data must be a regular file in the model's folder", None))
    if target.exists():
        if os.path.samefile(target, source):
            return False
        raise CompileError(Diagnostic(f"cannot link {weights} beside {out}: {target} exists and is another "
                                      "file; remove it or rename the weights", None))
    try:
        os.link(source, target)  # a symlinked `weights` is followed: the link is to the file itself
    except OSError as e:
        why = "they are on different filesystems" if e.errno == errno.EXDEV else (e.strerror or str(e))
        raise CompileError(Diagnostic(f"cannot hard-link {weights} beside {out}: {why}; {advice}", None)) from None
    return True


def _link_tensors(model: onnx.ModelProto, tensors: Mapping[str, np.ndarray], link: Link
                  ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model with every linkable tensor as an external-data initializer in the weights file
    (a Transpose node first when stored in another axis order), and the tensors left to copy."""
    shell = onnx.ModelProto()
    shell.CopyFrom(model)
    location = Path(link.weights).name
    taken = set(tensors) | {i.name for i in shell.graph.input} | {i.name for i in shell.graph.initializer}
    taken |= {t for n in shell.graph.node for t in (*n.input, *n.output)}
    copied: dict[str, np.ndarray] = {}
    transposes = []
    for name, arr in tensors.items():
        span = _stored_span(arr, link.weights)
        if span is None:
            copied[name] = arr
            continue
        offset, dims, perm = span
        stored = name
        if perm is not None:  # onnxruntime folds a Transpose of an initializer once, at load
            stored = f"{name}.stored"
            while stored in taken:
                stored += "_"
            taken.add(stored)
            transposes.append(helper.make_node("Transpose", [stored], [name], name=f"{stored}.transpose", perm=perm))
        t = _header(stored, arr, dims)
        _external(t, location, offset, arr.nbytes)
        shell.graph.initializer.append(t)
        link.transposed += perm is not None
        link.linked += perm is None
    if transposes:
        nodes = list(shell.graph.node)
        del shell.graph.node[:]
        shell.graph.node.extend(transposes + nodes)
    link.copied = len(copied)
    return shell, copied


def write_model(model: onnx.ModelProto, tensors: Mapping[str, np.ndarray], path: str) -> None:
    """Write `model` plus `tensors` as initializers; any previous file survives a failure."""
    link = _LINK.get()
    created: Optional[Path] = None
    try:
        with atomic_output(path) as (f, out):
            if link is not None:
                model, tensors = _link_tensors(model, tensors, link)
                if link.linked or link.transposed:
                    created = out.parent / Path(link.weights).name if _place(link.weights, out) else None
                    link.hard_link = created
            total = sum(a.nbytes for a in tensors.values())
            if total <= PROTOBUF_LIMIT:
                _write_embedded(f, model, tensors)
                stale = out.parent / data_name(path)  # from an earlier, larger compile to this path
                if stale.is_file() and not stale.is_symlink():
                    stale.unlink()
            else:
                with atomic_output(str(out.parent / data_name(path))) as (d, _):
                    _write_external(f, d, data_name(path), model, tensors)
    except BaseException:
        if created is not None:  # a failed compile leaves nothing behind, the weights' link included
            link.hard_link = None
            with contextlib.suppress(FileNotFoundError):
                created.unlink()
        raise
