"""IR -> ONNX.

Implements the ONNX emitter that op lowerings speak to (compiler/ops/registry.py),
then assembles a deterministic ModelProto: symbolic axes become named dynamic dims,
parameters become initializers named by their hierarchical names, and the file is
written atomically (external data past protobuf's 2 GB limit).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archlang import __version__
from archlang.compiler import ops
from archlang.compiler.axes import Axis, Size, TensorType
from archlang.compiler.ir import Graph
from archlang.compiler.layout import alignment

DEFAULT_OPSET = 23
MIN_OPSET = 17
PROTOBUF_LIMIT = 2 * 1024 ** 3 - 64 * 1024 ** 2  # leave room for the graph itself

ONNX_DTYPES = {
    "f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16,
    "f64": TensorProto.DOUBLE, "i64": TensorProto.INT64, "i32": TensorProto.INT32,
    "i8": TensorProto.INT8, "u8": TensorProto.UINT8, "bool": TensorProto.BOOL,
}


class OnnxEmitter:
    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], opset: int):
        self.graph, self.params, self.opset = graph, params, opset
        self.nodes: list[tuple[str, list[str], list[str], str, dict]] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._consts: dict[tuple, str] = {}
        self._sizes: dict[str, str] = {}
        self._counter = 0
        self.prefix = ""

    def fresh(self, base: str) -> str:
        self._counter += 1
        return f"{self.prefix}{base}_{self._counter}"

    # ---- the emitter interface ----
    def node(self, op_type: str, inputs: Sequence[str], n_outputs: int = 1, domain: str = "", **attrs: Any):
        outs = [self.fresh(op_type.lower()) for _ in range(n_outputs)]
        self.nodes.append((op_type, list(inputs), outs, domain, attrs))
        return outs[0] if n_outputs == 1 else outs

    def const(self, value: np.ndarray) -> str:
        value = np.asarray(value)
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._consts:
            name = f"const_{len(self._consts)}"
            self._consts[key] = name
            self.initializers[name] = value
        return self._consts[key]

    def const_i64(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64))

    def scalar(self, value: float, dtype: str) -> str:
        from archlang.compiler.ops.registry import numpy_dtype
        return self.const(np.asarray(value, dtype=numpy_dtype(dtype)))

    def dtype(self, dtype: str) -> int:
        return ONNX_DTYPES[dtype]

    def param(self, name: str) -> str:
        if name not in self.initializers:
            self.initializers[name] = self.params[name]
        return name

    def align(self, x: str, src: TensorType, dst: Sequence[str]) -> str:
        perm, expand = alignment(src.names, dst)
        if perm is not None:
            x = self.node("Transpose", [x], perm=perm)
        if expand:
            x = self.node("Unsqueeze", [x, self.const_i64(list(expand))])
        return x

    def size(self, size: Size) -> str:
        """A 1-D int64 tensor of one element holding `size`."""
        if size.is_static:
            return self.const_i64([size.value])
        key = str(size)
        if key in self._sizes:
            return self._sizes[key]
        total: Optional[str] = None
        for mono, coef in size.terms:
            term: Optional[str] = None
            for sym in mono:
                piece = self._symbol(sym)
                term = piece if term is None else self.node("Mul", [term, piece])
            if coef.denominator != 1:
                num = self.node("Mul", [term, self.const_i64([coef.numerator])]) if coef.numerator != 1 else term
                term = self.node("Div", [num, self.const_i64([coef.denominator])])
            elif term is None:
                term = self.const_i64([int(coef)])
            elif coef != 1:
                term = self.node("Mul", [term, self.const_i64([int(coef)])])
            total = term if total is None else self.node("Add", [total, term])
        self._sizes[key] = total
        return total

    def _symbol(self, sym: str) -> str:
        if sym not in self._sizes:
            inp, pos = self.graph.symbols[sym]
            self._sizes[sym] = self.node("Shape", [inp], start=pos, end=pos + 1)
        return self._sizes[sym]

    def shape(self, axes: Sequence[Axis]) -> str:
        if all(a.size.is_static for a in axes):
            return self.const_i64([a.size.value for a in axes])
        return self.node("Concat", [self.size(a.size) for a in axes], axis=0)


def _dims(t: TensorType) -> list:
    return [a.size.value if a.size.is_static else str(a.size).replace(" ", "") for a in t.axes]


def to_onnx(graph: Graph, params: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Lower the graph to an ONNX model (weights embedded; `save` decides external data)."""
    em = OnnxEmitter(graph, params, opset)
    names: dict[int, str] = {}
    for name, v in graph.inputs:
        names[v.id] = name
    for node in graph.nodes:
        em.prefix = f"{node.scope}/" if str(node.scope) else ""
        outs = ops.get(node.op).onnx(em, node, [names[v.id] for v in node.inputs])
        for v, o in zip(node.outputs, outs):
            names[v.id] = o
    em.prefix = ""
    # Name each output's producer after the output; route through Identity when it is
    # an input, an initializer, or already another output.
    produced = {o: i for i, n in enumerate(em.nodes) for o in n[2]}
    renames: dict[str, str] = {}
    used_out: set[str] = set()
    identities = []
    for out_name, v in graph.outputs:
        t = names[v.id]
        if t in produced and t not in used_out and t not in renames:
            renames[t] = out_name
        else:
            identities.append(helper.make_node("Identity", [renames.get(t, t)], [out_name]))
        used_out.add(t)
    nodes = []
    for op_type, ins, outs, domain, attrs in em.nodes:
        nodes.append(helper.make_node(op_type, [renames.get(i, i) for i in ins], [renames.get(o, o) for o in outs],
                                      name=f"{outs[0]}", domain=domain or None, **attrs))
    nodes += identities
    inputs = [helper.make_tensor_value_info(n, ONNX_DTYPES[v.type.dtype], _dims(v.type)) for n, v in graph.inputs]
    outputs = [helper.make_tensor_value_info(n, ONNX_DTYPES[v.type.dtype], _dims(v.type)) for n, v in graph.outputs]
    inits = [_tensor(name, arr, graph) for name, arr in em.initializers.items()]
    g = helper.make_graph(nodes, graph.name, inputs, outputs, initializer=inits)
    domains = sorted({d for _, _, _, d, _ in em.nodes if d})
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(g, opset_imports=imports, producer_name="archlang", producer_version=__version__)
    model.ir_version = min(model.ir_version, 10)
    return model


def _tensor(name: str, arr: np.ndarray, graph: Graph) -> TensorProto:
    spec = graph.params.get(name)
    if spec is not None and spec.type.dtype == "bf16":
        raise ValueError("bf16 parameters are not supported by the ONNX backend yet")
    t = numpy_helper.from_array(np.ascontiguousarray(arr), name)
    return t


def save(model: onnx.ModelProto, path: str) -> None:
    """Write atomically: a failure leaves any previous file untouched."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=str(out.parent))
    os.close(fd)
    try:
        if size > PROTOBUF_LIMIT:
            data_name = out.name + ".data"
            tmp_data = out.parent / f".{data_name}.tmp"
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name, size_threshold=1024)
            # The model refers to the final data name; fix the references, then move both.
            m = onnx.load_model(tmp, load_external_data=False)
            for t in m.graph.initializer:
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = data_name
            onnx.save_model(m, tmp)
            os.replace(tmp_data, out.parent / data_name)
        else:
            with open(tmp, "wb") as f:
                f.write(model.SerializeToString())
        os.replace(tmp, out)
    except BaseException:
        for p in (tmp,):
            if os.path.exists(p):
                os.unlink(p)
        raise
