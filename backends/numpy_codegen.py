"""IR -> NumPy: an in-process evaluator and a generated standalone module.

Both implement the NumPy emitter that op lowerings speak to (compiler/ops/registry.py),
so each op's NumPy semantics is written once. Kernels that are more than one numpy call
live in numpy_runtime.py; a generated module copies the ones it uses.
"""
from __future__ import annotations

import ast as pyast
import keyword
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from archlang.compiler import ops
from archlang.compiler.axes import Axis, Size, TensorType
from archlang.compiler.dtypes import computes_widened, widened
from archlang.compiler.ir import Graph
from archlang.compiler.layout import alignment

from . import (numpy_runtime, numpy_runtime_conv, numpy_runtime_fft, numpy_runtime_half, numpy_runtime_moe,
               numpy_runtime_scan)

# Kernel modules, searched in order; each imports numpy only.
RUNTIME_MODULES = (numpy_runtime, numpy_runtime_conv, numpy_runtime_fft, numpy_runtime_scan, numpy_runtime_moe,
                   numpy_runtime_half)


def _resolve(fn: str):
    if fn.startswith("np."):
        return getattr(np, fn[3:])
    for module in RUNTIME_MODULES:
        if hasattr(module, fn):
            return getattr(module, fn)
    raise KeyError(f"no NumPy kernel `{fn}`")


class RunError(Exception):
    """Inputs or weights that do not fit the model, found at run time."""


def bind_symbols(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Symbolic sizes from the input shapes, checking every input against its type."""
    symbols: dict[str, int] = {}
    for name, v in graph.inputs:
        if name not in inputs:
            raise RunError(f"missing input `{name}` ({v.type.describe()})")
        arr = inputs[name]
        if arr.ndim != len(v.type.axes):
            raise RunError(f"input `{name}` has {arr.ndim} dims but {v.type} has {len(v.type.axes)}")
        for a, n in zip(v.type.axes, arr.shape):
            syms = a.size.symbols
            if len(syms) == 1 and a.size == Size.of(next(iter(syms))):
                symbols.setdefault(next(iter(syms)), n)
    for node in graph.nodes:  # derived sizes (`seq / 2`) must come out whole
        for out in node.outputs:
            for a in out.type.axes:
                eval_size(a.size, symbols)
    for name, v in graph.inputs:
        for a, n in zip(v.type.axes, inputs[name].shape):
            want = eval_size(a.size, symbols)
            if want != n:
                raise RunError(f"input `{name}`: axis `{a.name}` should be {want} but is {n}")
    return symbols


def eval_size(size: Size, symbols: Mapping[str, int]) -> int:
    total = 0
    for mono, coef in size.terms:
        term = coef
        for s in mono:
            term *= symbols[s]
        total += term
    if getattr(total, "denominator", 1) != 1:
        bound = ", ".join(f"{k}={v}" for k, v in sorted(symbols.items()))
        raise RunError(f"with {bound}, the size {size} is {float(total):g}, not a whole number")
    return int(total)


class Evaluator:
    """Runs the IR on arrays, node by node."""

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], symbols: dict[str, int]):
        self.graph, self.params, self.symbols = graph, params, symbols

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        return _resolve(fn)(*args, **kwargs)

    def align(self, x: Any, src: TensorType, dst: Sequence[str]) -> Any:
        perm, expand = alignment(src.names, dst)
        if perm is not None:
            x = np.transpose(x, perm)
        return np.expand_dims(x, expand) if expand else x

    def size(self, size: Size) -> int:
        return eval_size(size, self.symbols)

    def shape(self, axes: Sequence[Axis]) -> tuple[int, ...]:
        return tuple(self.size(a.size) for a in axes)

    def broadcast(self, x: Any, axes: Sequence[Axis]) -> Any:
        return np.broadcast_to(x, self.shape(axes))

    def const(self, value: np.ndarray) -> np.ndarray:
        return value

    def param(self, name: str) -> np.ndarray:
        return self.params[name]

    def function(self, graph: Graph):
        def step(*args: np.ndarray) -> tuple:
            env = {v.id: np.asarray(a) for (_, v), a in zip(graph.inputs, args)}
            run_nodes(graph, self, env)
            return tuple(env[v.id] for _, v in graph.outputs)
        return step

    def unpack(self, x: Any, n: int) -> list:
        return list(x)


def check_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Every input present, of its dtype and shape; returns the symbolic sizes they bind."""
    symbols = bind_symbols(graph, inputs)
    for name, v in graph.inputs:
        arr = np.asarray(inputs[name])
        if arr.dtype != np.dtype(_np_dtype(v.type.dtype)) and not (v.type.dtype == "bf16" and arr.dtype.name == "bfloat16"):
            raise RunError(f"input `{name}` should be {v.type.dtype} but is {arr.dtype}")
    return symbols


def run_graph(graph: Graph, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate the graph with NumPy; returns outputs by name."""
    symbols = check_inputs(graph, inputs)
    em = Evaluator(graph, params, symbols)
    env: dict[int, Any] = {v.id: np.asarray(inputs[name]) for name, v in graph.inputs}
    for name, v in graph.inputs:  # a bf16 input is any float32 array, rounded here
        if v.type.dtype == "bf16":
            env[v.id] = numpy_runtime_half.round_bf16(env[v.id])
    run_nodes(graph, em, env)
    return {name: env[v.id] for name, v in graph.outputs}


def run_nodes(graph: Graph, em: Evaluator, env: dict[int, Any]) -> None:
    """Evaluate the graph's nodes into `env` (value id -> array), which holds its inputs."""
    for node in graph.nodes:
        try:
            outs = lower_node(em, node, [env[v.id] for v in node.inputs])
        except (IndexError, ValueError, MemoryError) as e:  # bad index values, sizes that do not fit
            where = f" (line {node.span.line})" if node.span else ""
            raise RunError(f"`{node.op}`{where} failed on these inputs: {str(e).splitlines()[0]}") from None
        for v, o in zip(node.outputs, outs):
            env[v.id] = np.asarray(o)


_ROUND = {"f16": "to_f16", "bf16": "round_bf16"}


def lower_node(em: Any, node: Any, ins: list) -> list:
    """The node's NumPy lowering; a node on f16 or bf16 tensors computes in float32 and rounds
    its results (compiler/dtypes.py). bf16 values are float32 arrays already."""
    if not computes_widened(node):
        return ops.get(node.op).numpy(em, node, ins)
    ins = [em.call("to_f32", x) if v.type.dtype == "f16" else x for v, x in zip(node.inputs, ins)]
    outs = ops.get(node.op).numpy(em, widened(node), ins)
    return [em.call(_ROUND[v.type.dtype], o) if v.type.dtype in _ROUND else o for v, o in zip(node.outputs, outs)]


def _np_dtype(dtype: str) -> str:
    from archlang.compiler.axes import DTYPES
    return DTYPES[dtype] if dtype != "bf16" else "float32"


# ---- the generated module ------------------------------------------------------

class Code(str):
    """A Python expression, emitted as is (plain values are emitted with repr)."""


def _lit(x: Any) -> str:
    if isinstance(x, Code):
        return str(x)
    if isinstance(x, (list, tuple)):
        inner = ", ".join(_lit(v) for v in x)
        return f"({inner},)" if isinstance(x, tuple) and len(x) == 1 else (f"({inner})" if isinstance(x, tuple) else f"[{inner}]")
    if isinstance(x, float):
        return repr(x) if np.isfinite(x) else ("np.inf" if x > 0 else "-np.inf" if x < 0 else "np.nan")
    return repr(x)


class CodeWriter:
    """Builds expressions as text; the driver assigns each node's outputs to names. A
    lowering that needs statements first (a body function, a tuple to unpack) leaves
    them in `pending`, which the driver writes before the node's own lines."""

    def __init__(self, taken: set[str]) -> None:
        self.used: set[str] = set()
        self.taken = taken
        self.pending: list[str] = []
        self.location = ""  # the node being lowered, as a `# file:line` comment

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Code:
        if not fn.startswith("np."):
            self.used.add(fn)
        parts = [_lit(a) for a in args] + [f"{k}={_lit(v)}" for k, v in kwargs.items()]
        return Code(f"{fn}({', '.join(parts)})")

    def align(self, x: Code, src: TensorType, dst: Sequence[str]) -> Code:
        perm, expand = alignment(src.names, dst)
        if perm is not None:
            x = self.call("np.transpose", x, tuple(perm))
        return self.call("np.expand_dims", x, expand) if expand else x

    def size(self, size: Size) -> Any:
        if size.is_static:
            return size.value
        return Code(_size_code(size))

    def shape(self, axes: Sequence[Axis]) -> Code:
        return Code("(" + "".join(_lit(self.size(a.size)) + ", " for a in axes).rstrip(" ") + ")")

    def broadcast(self, x: Code, axes: Sequence[Axis]) -> Code:
        return self.call("np.broadcast_to", x, self.shape(axes))

    def const(self, value: np.ndarray) -> Code:
        if value.ndim == 0:
            v = value.item()
            return Code(f"np.{value.dtype.name}({_lit(v)})")
        return Code(f"np.array({value.tolist()!r}, dtype=np.{value.dtype.name})")

    def param(self, name: str) -> Code:
        return Code(f"params[{name!r}]")

    def function(self, graph: Graph) -> Code:
        fn = _py_name(graph.name.lower(), self.taken)
        names = {v.id: _py_name(n, self.taken) for n, v in graph.inputs}
        outer, self.pending, location = self.pending, [], self.location
        lines = _emit_nodes(graph, self, names)
        self.pending, self.location = outer, location
        result = "".join(f"{names[v.id]}, " for _, v in graph.outputs).rstrip(" ")
        self.pending += ([f"def {fn}({', '.join(names[v.id] for _, v in graph.inputs)}):"]
                         + ["    " + line for line in lines] + [f"    return ({result})"])
        return Code(fn)

    def unpack(self, x: Code, n: int) -> list[Code]:
        name = _py_name("results", self.taken)
        self.pending.append(f"{name} = {x}{self.location}")
        return [Code(f"{name}[{i}]") for i in range(n)]


def _size_code(size: Size) -> str:
    parts = []
    for mono, coef in size.terms:
        factors = [f"dim_{s}" for s in mono]
        if coef.denominator != 1:
            text = f"{'*'.join(factors) or '1'} * {coef.numerator} // {coef.denominator}"
        elif coef == 1 and factors:
            text = "*".join(factors)
        else:
            text = "*".join([str(coef.numerator)] + factors)
        parts.append(text)
    return "(" + " + ".join(parts) + ")" if len(parts) > 1 else parts[0]


def _py_name(hint: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", hint) or "t"
    if base[0].isdigit() or keyword.iskeyword(base) or base in ("np", "params", "inputs") or base.startswith("dim_"):
        base = "v_" + base
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _runtime_names() -> list[str]:
    return [name for module in RUNTIME_MODULES for name in dir(module) if callable(getattr(module, name))
            and not name.startswith("_")]


def _runtime_sources(used: set[str]) -> list[str]:
    """The runtime functions named in `used`, with the helpers they call, in file order."""
    defs, texts = {}, {}
    for module in RUNTIME_MODULES:
        text = Path(module.__file__).read_text()
        for n in pyast.parse(text).body:
            if isinstance(n, pyast.FunctionDef):
                defs[n.name], texts[n.name] = n, text
    need: set[str] = set()
    todo = list(used)
    while todo:
        name = todo.pop()
        if name in need or name not in defs:
            continue
        need.add(name)
        todo += [n.id for n in pyast.walk(defs[name]) if isinstance(n, pyast.Name) and n.id in defs]
    return [pyast.get_source_segment(texts[n], defs[n]) for n in defs if n in need]


def _emit_nodes(graph: Graph, writer: CodeWriter, names: dict[int, str]) -> list[str]:
    """One assignment per node output (renames only rename); `names` holds the inputs' names."""
    body: list[str] = []
    for node in graph.nodes:
        loc = f"  # {Path(node.span.file).name}:{node.span.line}" if node.span else ""
        writer.location = loc
        outs = lower_node(writer, node, [Code(names[v.id]) for v in node.inputs])
        body += writer.pending
        writer.pending = []
        for v, expr in zip(node.outputs, outs):
            if node.op == "rename" or (isinstance(expr, Code) and expr in names.values()):
                names[v.id] = str(expr)
                continue
            names[v.id] = _py_name((v.hint or node.op).replace(".", "_"), writer.taken)
            body.append(f"{names[v.id]} = {expr}{loc}")
    return body


def emit_module(graph: Graph, source_file: str = "") -> str:
    """A standalone Python module (numpy its only import) computing the model."""
    taken: set[str] = set(_runtime_names())  # a value named `softmax` must not hide the kernel
    writer = CodeWriter(taken)
    names: dict[int, str] = {}
    body: list[str] = []
    fn_name = _py_name(graph.name.lower(), taken)
    args = []
    for name, v in graph.inputs:
        names[v.id] = _py_name(name, taken)
        args.append(names[v.id])
    for sym, (inp, pos) in sorted(graph.symbols.items()):
        in_name = names[next(v.id for n, v in graph.inputs if n == inp)]
        body.append(f"dim_{sym} = {in_name}.shape[{pos}]")
    for name, v in graph.inputs:
        dims = ", ".join(_lit(writer.size(a.size)) for a in v.type.axes)
        body.append(f"assert {names[v.id]}.shape == ({dims}{',' if len(v.type.axes) == 1 else ''}), "
                    f"f\"input {name}: expected {v.type}, got {{{names[v.id]}.shape}}\"")
    body += [f"{names[v.id]} = {writer.call('round_bf16', Code(names[v.id]))}" for _, v in graph.inputs
             if v.type.dtype == "bf16"]
    body += _emit_nodes(graph, writer, names)
    result = ", ".join(f"{n!r}: {names[v.id]}" for n, v in graph.outputs)
    body.append(f"return {{{result}}}")
    params = "\n".join(f"    {n!r}: ({_lit(tuple(a.size.value if a.size.is_static else str(a.size) for a in p.type.axes))}, "
                       f"{_np_dtype(p.type.dtype)!r}),"
                       for n, p in graph.params.items())
    sig_doc = "\n".join(f"        {n}: {v.type}" for n, v in graph.inputs)
    out_doc = "\n".join(f"        {n}: {v.type}" for n, v in graph.outputs)
    header = f'"""NumPy reference for model `{graph.name}`' + (f", generated by archc from {Path(source_file).name}" if source_file else ", generated by archc") + '."""'
    runtime = "\n\n\n".join(_runtime_sources(writer.used))
    lines = [header, "import numpy as np", "", "",
             "# Parameters: name -> (shape, dtype); symbolic sizes are strings."
             + ("\n# bf16 ones are float32 arrays of bfloat16 values (NumPy has no bfloat16)."
                if any(p.type.dtype == "bf16" for p in graph.params.values()) else ""),
             "PARAMS = {", params, "}", "", ""]
    if runtime:
        lines += [runtime, "", ""]
    lines.append(f"def {fn_name}(params, {', '.join(args)}):")
    lines.append(f'    """Inputs:\n{sig_doc}\n    Returns a dict of outputs:\n{out_doc}\n    """')
    lines += ["    " + b for b in body]
    return "\n".join(lines) + "\n"
