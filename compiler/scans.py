"""`scan`: a block applied at each position of an axis, carrying state from step to step.

    h_last, ys = scan seq Cell(h0, x)

The block is the step. Its arguments are sorted by what the caller passes:
- an argument that a result of the same name feeds back is *carried*: the caller's value is
  the initial state, the result becomes the next step's argument, and the scan returns the
  last state (`h` in `Cell(h: ..., x: ...) -> (h: ..., y: ...)`);
- any other argument that has the scanned axis is *sliced*: each step sees one position;
- the rest are passed whole to every step (a context, a bias).
Results that carry nothing are stacked along the scanned axis, which comes first in them.
`scan reverse seq` visits the positions last to first (outputs stay at their positions).

The step is built once, as a body graph held by one `scan` node: a symbolic axis stays open
and ONNX gets a Scan op rather than an unrolled loop. A mixin of the Builder
(compiler/build.py).
"""
from __future__ import annotations

from typing import Union

from archlang.grammar import ast

from .blocks import check_arguments
from .diagnostics import CompileError, Diagnostic, did_you_mean, error
from .axes import TensorType
from .ir import Graph
from .values import Operand, snake


class Scans:
    def scan(self, s: ast.Scan) -> Union[Operand, list[Operand]]:
        call = s.call
        if call.name not in self.program.blocks:
            raise error(f"`scan` applies a block; `{call.name}` is not one", call.name_span or call.span,
                        did_you_mean(call.name, self.program.blocks))
        fn = self.program.blocks[call.name]
        axis = self.axis(s.axis, s.axis_span)
        check_arguments(call, fn)
        results = {r.name for r in fn.results}
        outer = [self.value(self.expr(a), a.span) for a in call.args]
        carried, sliced, whole = [], [], []
        for i, (decl, v, a) in enumerate(zip(fn.args, outer, call.args)):
            if decl.name in results:
                if v.type.has(axis.name):
                    raise CompileError(Diagnostic(
                        f"`{decl.name}` is carried from step to step, so its initial value cannot have the "
                        f"scanned axis `{axis.name}`", a.span,
                        help=f"pass the state at one position, e.g. `select(x, {axis.name}, 0)`")
                        .note(f"the result `{decl.name}` feeds it back", _result(fn, decl.name).span))
                carried.append(i)
            elif v.type.has(axis.name):
                sliced.append(i)
            else:
                whole.append(i)
        # A step that slices nothing (a decoder feeding back its own output) still runs |axis|
        # times: ONNX's Scan counts steps from a sliced input, so it gets one it ignores.
        ticks = None if sliced else self.emit("zeros", [], {"axes": (axis,), "dtype": "bool"}, s.span)[0]
        order = carried + sliced + whole
        body = Graph(f"{fn.name}_step", self.root)
        outer_graph = self.graph
        self.graph = body
        try:
            for i in order:
                if ticks is not None and i == (whole or [None])[0]:
                    body.add_input("tick", TensorType("bool", ()))
                t = outer[i].type.without([axis.name]) if i in sliced else outer[i].type
                self.env.values[f"\0scan{i}"] = body.add_input(fn.args[i].name, t)
            if ticks is not None and not whole:
                body.add_input("tick", TensorType("bool", ()))
            step = ast.Call(call.name, call.binding, tuple(ast.Var(f"\0scan{i}", a.span)
                                                         for i, a in enumerate(call.args)),
                            None, call.instance, call.span, call.name_span)
            out = self.call_block(step, call.instance or snake(call.name))
            out = out if isinstance(out, list) else [out]
            by_name = {r.name: self.value(v, call.span) for r, v in zip(fn.results, out)}
            for k, i in enumerate(carried):
                name = fn.args[i].name
                want, got = body.inputs[k][1].type, by_name[name].type
                if got.dtype != want.dtype or not got.same_axes(want):
                    raise CompileError(Diagnostic(
                        f"the state `{name}` goes into `{call.name}` as {want.describe()} but comes out as "
                        f"{got.describe()}; a carried state must keep its type", call.span)
                        .note(f"`{name}` is taken as {want.describe()} here", fn.args[i].span)
                        .note("and returned here", _result(fn, name).span))
                if got.names != want.names:
                    by_name[name] = self.emit("transpose", [by_name[name]], {"order": want.names}, call.span)[0]
            feedback = [fn.args[i].name for i in carried]
            stacked = [r.name for r in fn.results if r.name not in feedback]
            body.outputs = [(n, by_name[n]) for n in feedback + stacked]
        finally:
            self.graph = outer_graph
            for i in range(len(call.args)):
                self.env.values.pop(f"\0scan{i}", None)
        attrs = {"body": body, "axis": axis, "carried": len(carried), "sliced": len(sliced) or 1,
                 "reverse": s.reverse, "block": fn.name}
        inputs = [outer[i] for i in carried] + ([ticks] if ticks is not None else [outer[i] for i in sliced]) \
            + [outer[i] for i in whole]
        node_outs = self.emit("scan", inputs, attrs, s.span)
        named = dict(zip(feedback + stacked, node_outs))
        values = [named[r.name] for r in fn.results]
        return values[0] if len(values) == 1 else values



def _result(fn: ast.Function, name: str) -> ast.TypedArg:
    return next(r for r in fn.results if r.name == name)
