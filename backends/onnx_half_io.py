"""Running bf16 models in onnxruntime from NumPy.

onnxruntime's Python API takes and returns NumPy arrays, and NumPy has no bfloat16: a bf16
input cannot be fed, nor a bf16 output read back. `float32_io` gives the model float32 inputs
and outputs where it has bf16 ones, with a Cast at each (float32 -> bf16 rounds to nearest
even, as the NumPy backend rounds its bf16 inputs); the model inside is unchanged. The
written .onnx file keeps its bf16 interface; this is for running it here.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def float32_io(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with float32 in place of its bf16 graph inputs and outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    casts_in, casts_out = [], []
    for vi in g.input:
        if vi.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            inner = f"{vi.name}__bf16"
            for node in g.node:
                _rename_input(node, vi.name, inner)
            casts_in.append(helper.make_node("Cast", [vi.name], [inner], to=TensorProto.BFLOAT16))
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    for vi in g.output:
        if vi.type.tensor_type.elem_type == TensorProto.BFLOAT16:
            inner = f"{vi.name}__bf16"
            for node in g.node:
                node.output[:] = [inner if o == vi.name else o for o in node.output]
                _rename_input(node, vi.name, inner)
            casts_out.append(helper.make_node("Cast", [inner], [vi.name], to=TensorProto.FLOAT))
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    return out


def _rename_input(node: onnx.NodeProto, old: str, new: str) -> None:
    """Also inside subgraphs (a Scan body reads enclosing tensors by name)."""
    node.input[:] = [new if i == old else i for i in node.input]
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in sub.node:
                _rename_input(inner, old, new)
