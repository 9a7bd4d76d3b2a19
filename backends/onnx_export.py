"""IR -> ONNX.

Implements the ONNX emitter that op lowerings speak to (compiler/ops/registry.py),
then assembles a deterministic ModelProto: symbolic axes become named dynamic dims,
parameters become initializers named by their hierarchical names, and the file is
written atomically (external data past protobuf's 2 GB limit).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archlang import __version__
from archlang.compiler import ops
from archlang.compiler.axes import Axis, Size, TensorType
from archlang.compiler.dtypes import HALF_DTYPES, computes_widened, widened
from archlang.compiler.ir import Graph
from archlang.compiler.layout import alignment

from .onnx_file import write_model

DEFAULT_OPSET = 23
MIN_OPSET = 17

ONNX_DTYPES = {
    "f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16,
    "f64": TensorProto.DOUBLE, "i64": TensorProto.INT64, "i32": TensorProto.INT32,
    "i8": TensorProto.INT8, "u8": TensorProto.UINT8, "bool": TensorProto.BOOL,
}


@dataclass(frozen=True)
class Body:
    """A subgraph (a Scan's body) until the model is assembled: node tuples as in
    `OnnxEmitter.nodes`, and the value infos of its inputs and outputs."""
    name: str
    nodes: list
    inputs: list
    outputs: list


class OnnxEmitter:
    """Collects ONNX nodes for one graph. A body's emitter (`parent` set) keeps only the nodes
    that depend on the body's own inputs: the rest (weights' transposes, sizes, constants)
    go to the enclosing graph, computed once instead of at every step."""

    # How fused attention lowers where both forms apply: "standard" (the opset-23 Attention
    # op) or "matmul" (MatMul/Softmax/MatMul); benchmarks/passes.py measures the two.
    attention_form = "standard"

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], opset: int,
                 parent: Optional["OnnxEmitter"] = None, hoist: bool = True, target: str = "ort"):
        self.graph, self.params, self.opset, self.parent = graph, params, opset, parent
        # "ort": lowerings may use onnxruntime's com.microsoft ops; "portable": standard ops only.
        self.target = parent.target if parent is not None else target
        self.hoist = hoist and parent is not None
        self.nodes: list[tuple[str, list[str], list[str], str, dict]] = []
        self.initializers: dict[str, np.ndarray] = parent.initializers if parent else {}
        self._consts: dict[tuple, str] = parent._consts if parent else {}
        self._sizes: dict[str, str] = {}
        self._counter = [0] if parent is None else parent._counter  # names are unique model-wide
        self.local: set[str] = set()  # in a body: the names defined inside it
        self.prefix = ""

    def fresh(self, base: str) -> str:
        self._counter[0] += 1
        return f"{self.prefix}{base}_{self._counter[0]}"

    # ---- the emitter interface ----
    def node(self, op_type: str, inputs: Sequence[str], n_outputs: int = 1, domain: str = "", **attrs: Any):
        invariant = not any(i in self.local for i in inputs) and not any(isinstance(a, Body) for a in attrs.values())
        if self.hoist and invariant:
            return self.parent.node(op_type, inputs, n_outputs, domain, **attrs)
        outs = [self.fresh(op_type.lower()) for _ in range(n_outputs)]
        self.nodes.append((op_type, list(inputs), outs, domain, attrs))
        if self.parent is not None:
            self.local.update(outs)
        return outs[0] if n_outputs == 1 else outs

    def subgraph(self, graph: Graph, inputs: Sequence[str], outer: Sequence[str]) -> Body:
        child = OnnxEmitter(self.graph, self.params, self.opset, parent=self)
        names: dict[int, str] = {}
        formal = []
        for name, v in graph.inputs[:len(inputs)]:
            names[v.id] = child.fresh(name)
            child.local.add(names[v.id])
            formal.append(helper.make_tensor_value_info(names[v.id], ONNX_DTYPES[v.type.dtype], _dims(v.type)))
        for (name, v), outer_name in zip(graph.inputs[len(inputs):], outer):
            names[v.id] = outer_name
        _lower_nodes(child, graph, names)
        results = child._results([names[v.id] for _, v in graph.outputs], [v.type for _, v in graph.outputs])
        return Body(self.fresh(graph.name), child.nodes, formal, results)

    def branch(self, name: str, fill: Callable[["OnnxEmitter"], Sequence[str]], types: Sequence[TensorType]) -> Body:
        """A subgraph without inputs (an If's branch): `fill` adds its nodes through the emitter
        it is given and returns its outputs. Nothing is hoisted out of a branch, since the
        branch not taken must cost nothing."""
        child = OnnxEmitter(self.graph, self.params, self.opset, parent=self, hoist=False)
        outs = list(fill(child))
        return Body(self.fresh(name), child.nodes, [], child._results(outs, types))

    def _results(self, outs: Sequence[str], types: Sequence[TensorType]) -> list:
        """Value infos of a subgraph's outputs, each a tensor the subgraph itself produces."""
        produced = {o for n in self.nodes for o in n[2]}
        results, seen = [], set()
        for out, ty in zip(outs, types):
            if out not in produced or out in seen:  # an input, an outer tensor, a repeat
                copy = self.fresh("identity")  # here, never hoisted: the subgraph must produce it
                self.nodes.append(("Identity", [out], [copy], "", {}))
                out = copy
            seen.add(out)
            results.append(helper.make_tensor_value_info(out, ONNX_DTYPES[ty.dtype], _dims(ty)))
        return results

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
            value = self.params[name]
            if self.graph.params[name].type.dtype == "bf16":  # float32 in NumPy, bfloat16 in the file
                import ml_dtypes
                value = np.asarray(value).astype(ml_dtypes.bfloat16, copy=False)
            self.initializers[name] = value
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
        if self.parent is not None:
            return self.parent.size(size)
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

    def broadcast(self, x: str, axes: Sequence[Axis]) -> str:
        return self.node("Expand", [x, self.shape(axes)])

    def shape(self, axes: Sequence[Axis]) -> str:
        if all(a.size.is_static for a in axes):
            return self.const_i64([a.size.value for a in axes])
        if self.parent is not None:
            return self.parent.shape(axes)
        key = "shape:" + ",".join(str(a.size) for a in axes)  # one Concat per distinct shape
        if key not in self._sizes:
            self._sizes[key] = self.node("Concat", [self.size(a.size) for a in axes], axis=0)
        return self._sizes[key]


def _share_weight_transforms(em: OnnxEmitter, names: dict[int, str]) -> None:
    """One Transpose or Reshape per weight and shape, however many times the weight is used (a
    weight shared by 12 layers would otherwise be transformed 12 times). Initializers keep
    their parameter names and stored layout; onnxruntime folds the transforms at load."""
    first: dict[tuple, list[str]] = {}
    renames: dict[str, str] = {}
    weightish = set(em.initializers)
    kept = []
    for op_type, ins, outs, domain, attrs in em.nodes:
        ins = [renames.get(i, i) for i in ins]
        if op_type in ("Transpose", "Reshape") and not domain and all(i in weightish for i in ins):
            key = (op_type, tuple(ins), repr(sorted(attrs.items())))
            if key in first:
                renames.update(zip(outs, first[key]))
                continue
            first[key] = outs
            weightish.update(outs)
        kept.append((op_type, ins, outs, domain, attrs))
    em.nodes = _map_inputs(kept, lambda i: renames.get(i, i))
    for v_id, name in list(names.items()):
        names[v_id] = renames.get(name, name)


def _map_inputs(nodes: list, rename: Callable[[str], str]) -> list:
    """The nodes with each input renamed, inside bodies too (they read enclosing tensors)."""
    out = []
    for op_type, ins, outs, domain, attrs in nodes:
        attrs = {k: replace(a, nodes=_map_inputs(a.nodes, rename)) if isinstance(a, Body) else a
                 for k, a in attrs.items()}
        out.append((op_type, [rename(i) for i in ins], outs, domain, attrs))
    return out


def _all_inputs(nodes: list) -> set[str]:
    read = set()
    for _, ins, _, _, attrs in nodes:
        read.update(ins)
        for a in attrs.values():
            if isinstance(a, Body):
                read |= _all_inputs(a.nodes) | {o.name for o in a.outputs}
    return read


def _drop_unread_initializers(em: OnnxEmitter, names: dict[int, str], graph: Graph) -> None:
    """Parameters the graph never reads (a checkpoint's step counter) stay out of the file."""
    read = _all_inputs(em.nodes) | {names[v.id] for _, v in graph.outputs}
    em.initializers = {k: v for k, v in em.initializers.items() if k in read}


def _lower_nodes(em: OnnxEmitter, graph: Graph, names: dict[int, str]) -> None:
    """Each node through its op's ONNX lowering; `names` maps value ids to tensor names."""
    for node in graph.nodes:
        em.prefix = f"{node.scope}/" if str(node.scope) else ""
        outs = _lower_node(em, node, [names[v.id] for v in node.inputs])
        for v, o in zip(node.outputs, outs):
            names[v.id] = o
    em.prefix = ""


def _lower_node(em: OnnxEmitter, node, ins: list[str]) -> list[str]:
    """A node on f16 or bf16 tensors computes in float32 between Casts (compiler/dtypes.py): the
    NumPy reference's rule, and the only way onnxruntime's CPU provider runs bf16 arithmetic."""
    if not computes_widened(node):
        return ops.get(node.op).onnx(em, node, ins)
    ins = [em.node("Cast", [x], to=TensorProto.FLOAT) if v.type.dtype in HALF_DTYPES else x
           for v, x in zip(node.inputs, ins)]
    outs = ops.get(node.op).onnx(em, widened(node), ins)
    return [em.node("Cast", [o], to=ONNX_DTYPES[v.type.dtype]) if v.type.dtype in HALF_DTYPES else o
            for v, o in zip(node.outputs, outs)]


def _make_nodes(nodes: list, renames: Mapping[str, str]) -> list[onnx.NodeProto]:
    made = []
    for op_type, ins, outs, domain, attrs in nodes:
        attrs = {k: helper.make_graph(_make_nodes(a.nodes, renames), a.name, a.inputs, a.outputs)
                 if isinstance(a, Body) else a for k, a in attrs.items()}
        made.append(helper.make_node(op_type, [renames.get(i, i) for i in ins], [renames.get(o, o) for o in outs],
                                     name=f"{outs[0]}", domain=domain or None, **attrs))
    return made


def _dims(t: TensorType) -> list:
    return [a.size.value if a.size.is_static else str(a.size).replace(" ", "") for a in t.axes]


def lower(graph: Graph, params: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET, target: str = "ort"
          ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model without initializers, and the initializer arrays by name (for `write_model`)."""
    em = OnnxEmitter(graph, params, opset, target=target)
    names: dict[int, str] = {}
    for name, v in graph.inputs:
        names[v.id] = name
    _lower_nodes(em, graph, names)
    _share_weight_transforms(em, names)
    _drop_unread_initializers(em, names, graph)
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
    nodes = _make_nodes(em.nodes, renames) + identities
    inputs = [helper.make_tensor_value_info(n, ONNX_DTYPES[v.type.dtype], _dims(v.type)) for n, v in graph.inputs]
    outputs = [helper.make_tensor_value_info(n, ONNX_DTYPES[v.type.dtype], _dims(v.type)) for n, v in graph.outputs]
    g = helper.make_graph(nodes, graph.name, inputs, outputs)
    domains = sorted({d for _, _, _, d, _ in em.nodes if d})
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(g, opset_imports=imports, producer_name="archlang", producer_version=__version__)
    model.ir_version = min(model.ir_version, 10)
    return model, dict(em.initializers)


def to_onnx(graph: Graph, params: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET,
            target: str = "ort") -> onnx.ModelProto:
    """The whole model in memory, weights embedded (for onnxruntime sessions and tests)."""
    model, tensors = lower(graph, params, opset, target)
    model.graph.initializer.extend(numpy_helper.from_array(np.require(a, requirements="C"), n)
                                   for n, a in tensors.items())
    return model


def check_structure(model: onnx.ModelProto, tensors: Mapping[str, np.ndarray]) -> None:
    """onnx.checker's full check (with shape inference) on the graph, weights standing in as typed
    inputs: it costs milliseconds where checking a 500 MB file costs seconds, and the weights'
    bytes are written by construction to match their declared dims."""
    shell = onnx.ModelProto()
    shell.CopyFrom(model)
    shell.graph.input.extend(helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                             for n, a in tensors.items())
    onnx.checker.check_model(shell, full_check=True)


def compile_to_file(graph: Graph, params: Mapping[str, np.ndarray], path: str, opset: int = DEFAULT_OPSET,
                    check: bool = True, target: str = "ort") -> onnx.ModelProto:
    """Lower, check and write `path` (atomically, external data past 2 GB); returns the model
    without its weights."""
    model, tensors = lower(graph, params, opset, target)
    if check:
        check_structure(model, tensors)
    write_model(model, tensors, path)
    return model


