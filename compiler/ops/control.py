"""Control flow: `scan`, a body graph applied at each position of an axis.

The builder (compiler/scans.py) makes one `scan` node per `scan` statement. Its inputs are
the carried states, then the sliced sequences, then the values passed whole; `attrs["body"]`
is a Graph whose inputs are in that order (sequences without the scanned axis) and whose
outputs are the next states, then the per-step results. Per-step results are stacked along
the scanned axis, first.

NumPy runs the body in a loop (`scan_loop` in backends/numpy_runtime_scan.py); ONNX gets a
Scan op whose body reads the whole values and the weights from the enclosing graph.
"""
from __future__ import annotations

import numpy as np

from ..axes import Size, TensorType
from ..diagnostics import error
from .registry import OpDef, numpy_dtype, register


@register
class Scan(OpDef):
    name, surface = "scan", False
    summary = ("`h, ys = scan seq Cell(h0, x)`: the block `Cell` at each position of `seq`; results named "
               "like an argument carry it to the next step, the others are stacked along `seq`")

    def macs(self, node):
        from .registry import get
        per_step = Size.of(0)
        for n in node.attrs["body"].nodes:
            per_step = per_step + get(n.op).macs(n)
        return per_step * node.attrs["axis"].size

    def infer(self, ins, attrs, span):
        body, axis, n, m = attrs["body"], attrs["axis"], attrs["carried"], attrs["sliced"]
        for i, ((name, v), t) in enumerate(zip(body.inputs, ins)):
            if n <= i < n + m:
                t = t.without([axis.name])
            if t.dtype != v.type.dtype or not t.same_axes(v.type):
                raise error(f"scan input `{name}` is {t.describe()}, but the step takes {v.type.describe()}", span)
        outs = [v.type for _, v in body.outputs]
        return outs[:n] + [TensorType(t.dtype, (axis,) + tuple(t.axes)) for t in outs[n:]]

    def numpy(self, e, node, ins):
        a = node.attrs
        body, n, m = a["body"], a["carried"], a["sliced"]
        step = e.function(body)
        positions = [v.type.position(a["axis"].name) for v in node.inputs[n:n + m]]
        stacked = [v.type for _, v in body.outputs[n:]]
        result = e.call("scan_loop", step, ins[:n], ins[n:n + m], ins[n + m:], positions,
                        [e.shape(t.axes) for t in stacked], [numpy_dtype(t.dtype).name for t in stacked],
                        reverse=a["reverse"])
        return e.unpack(result, len(node.outputs))

    def onnx(self, g, node, ins):
        a = node.attrs
        body, n, m = a["body"], a["carried"], a["sliced"]
        k = len(body.outputs) - n
        types = [v.type for v in node.outputs]

        def scan(e):
            # The body's first n + m inputs are the Scan's; the values passed whole are read
            # from the enclosing graph by name.
            proto = e.subgraph(body, ins[:n + m], ins[n + m:])
            positions = [v.type.position(a["axis"].name) for v in node.inputs[n:n + m]]
            directions = {"scan_output_directions": [int(a["reverse"])] * k} if k else {}
            outs = e.node("Scan", ins[:n + m], n_outputs=n + k, body=proto, num_scan_inputs=m,
                          scan_input_axes=positions, scan_input_directions=[int(a["reverse"])] * m, **directions)
            return outs if isinstance(outs, list) else [outs]

        def no_steps(e):
            zeros = [e.node("Expand", [e.const(np.zeros((1,), numpy_dtype(t.dtype))), e.shape(t.axes)])
                     for t in types[n:]]
            # bf16 zeros are made in float32 (NumPy has no bfloat16; onnxruntime no bf16 Expand)
            zeros = [e.node("Cast", [z], to=e.dtype(t.dtype)) if t.dtype == "bf16" else z
                     for z, t in zip(zeros, types[n:])]
            return [e.node("Identity", [x]) for x in ins[:n]] + zeros

        size = a["axis"].size
        if size.is_static:
            return scan(g)
        # onnxruntime's Scan dies (SIGFPE) on a sequence of length 0: branch around it.
        empty = g.node("Equal", [g.node("Reshape", [g.size(size), g.const_i64([])]), g.const_i64(0)])
        outs = g.node("If", [empty], n_outputs=n + k, then_branch=g.branch("no_steps", no_steps, types),
                      else_branch=g.branch("steps", scan, types))
        return outs if isinstance(outs, list) else [outs]

