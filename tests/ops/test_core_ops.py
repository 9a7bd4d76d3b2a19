"""The core op families, each as a small .arch program run through every backend.

Every program is checked three ways:
1. the NumPy backend (the in-process evaluator) against a reference computed here with
   plain numpy (explicit formulas, `np.einsum` with hand-written subscripts, `math.erf`);
2. onnxruntime on the ONNX export, at opset 23 and at opset 17, against the NumPy backend
   (within 1e-5), with the same session run at several sizes of the symbolic axes;
3. for a selection, the standalone module from `emit_module`, imported from tmp_path.

Type errors are checked by the diagnostic's message, which must name the axis involved.
"""
from __future__ import annotations

import importlib.util
import itertools
import math
import re
import textwrap
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import onnxruntime as ort
import pytest

from archlang.backends.numpy_codegen import emit_module, run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.axes import DTYPES
from archlang.compiler.diagnostics import CompileError, SourceCache
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ir import Graph

OPSETS = (23, 17)
ATOL = RTOL = 1e-5
REF_TOL = dict(rtol=1e-5, atol=1e-5)  # NumPy backend vs the references written here

Inputs = Mapping[str, np.ndarray]

# ---- running a program through every backend ---------------------------------------

def compile_arch(src: str, sets: Optional[Mapping[str, str]] = None) -> Graph:
    """Compile .arch source text (dedented) into the IR."""
    return load_graph("test.arch", SourceCache(), dict(sets or {}), text=textwrap.dedent(src).lstrip("\n"))


def compile_error(src: str, sets: Optional[Mapping[str, str]] = None) -> CompileError:
    """The CompileError that compiling `src` raises (fails the test when it compiles)."""
    with pytest.raises(CompileError) as e:
        compile_arch(src, sets)
    return e.value


def onnx_session(graph: Graph, params: Mapping[str, np.ndarray], opset: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    model = to_onnx(graph, params, opset=opset)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_session(sess: ort.InferenceSession, inputs: Inputs) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {i.name: inputs[i.name] for i in sess.get_inputs()})))


_module_ids = itertools.count()


def load_module(graph: Graph, directory: Path):
    """Write the generated module under `directory`, import it; returns its model function."""
    text = emit_module(graph)
    name = f"archgen_core_{next(_module_ids)}"
    path = Path(directory) / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    assert re.findall(r"^(?:import|from) (\S+)", text, flags=re.M) == ["numpy"], "numpy must be its only import"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, re.findall(r"^def (\w+)\(params\b", text, flags=re.M)[-1])


def assert_same(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], what: str,
                atol: float = ATOL, rtol: float = RTOL) -> None:
    assert set(got) == set(want), f"{what}: outputs {sorted(got)} != {sorted(want)}"
    for k in want:
        g, w = np.asarray(got[k]), np.asarray(want[k])
        assert g.shape == w.shape, f"{what}: output `{k}` has shape {g.shape}, expected {w.shape}"
        assert g.dtype == w.dtype, f"{what}: output `{k}` has dtype {g.dtype}, expected {w.dtype}"
        if w.dtype == np.bool_ or np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=f"{what}: output `{k}`")
        else:
            np.testing.assert_allclose(g, w, atol=atol, rtol=rtol, err_msg=f"{what}: output `{k}`")


@dataclass
class Result:
    graph: Graph
    params: dict[str, np.ndarray]
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)  # NumPy backend, per input set

    @property
    def out(self) -> np.ndarray:
        """The only output of the first input set."""
        (v,) = self.outputs[0].values()
        return v

    def outs(self, name: Optional[str] = None) -> list[np.ndarray]:
        """One output (the only one when `name` is None) for every input set."""
        return [o[name] if name else next(iter(o.values())) for o in self.outputs]


def check(src: str, inputs: Union[Inputs, Sequence[Inputs]], *, sets: Optional[Mapping[str, str]] = None,
          params: Optional[Mapping[str, np.ndarray]] = None, opsets: Sequence[int] = OPSETS,
          module_dir: Optional[Path] = None, atol: float = ATOL, rtol: float = RTOL) -> Result:
    """Compile `src`, run the NumPy backend on each input set, and assert that onnxruntime (each
    opset, one session for all input sets) and, with `module_dir`, the generated module agree.
    `params` replaces some of the seeded parameters (by hierarchical name)."""
    graph = compile_arch(src, sets)
    p = load_params(graph, None, seed=0)
    if params:
        assert set(params) <= set(p), f"unknown parameters {set(params) - set(p)}"
        p.update({k: np.asarray(v, dtype=p[k].dtype) for k, v in params.items()})
    runs = [inputs] if isinstance(inputs, Mapping) else list(inputs)
    res = Result(graph, p)
    for feed in runs:
        out = run_graph(graph, p, feed)
        for name, v in graph.outputs:  # the declared dtype and layout, static sizes as declared
            want_dtype = np.dtype("float32" if v.type.dtype == "bf16" else DTYPES[v.type.dtype])
            assert np.asarray(out[name]).dtype == want_dtype, f"output `{name}` is {out[name].dtype} for {v.type}"
            shape = np.shape(out[name])
            assert len(shape) == len(v.type.axes), f"output `{name}` has shape {shape} for {v.type}"
            for a, n in zip(v.type.axes, shape):
                assert not a.size.is_static or a.size.value == n, f"output `{name}`: `{a.name}` is {n}"
        res.outputs.append(out)
    for opset in opsets:
        sess = onnx_session(graph, p, opset)
        for feed, want in zip(runs, res.outputs):
            assert_same(run_session(sess, feed), want, f"onnx opset {opset}", atol, rtol)
    if module_dir is not None:
        fn = load_module(graph, module_dir)
        for feed, want in zip(runs, res.outputs):
            got = fn(p, **{name: feed[name] for name, _ in graph.inputs})
            assert_same({k: np.asarray(v) for k, v in got.items()}, want, "generated module", 0.0, 0.0)
    return res


def close(got, want, **tol) -> None:
    """NumPy backend output vs a reference computed in the test (float64 is fine)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape}, reference {want.shape}"
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), **(tol or REF_TOL))


RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_per_test(request):
    """Each test draws its own inputs, whatever else runs (so `-k` selects the same numbers)."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def randn(*shape: int, dtype=np.float32, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale + shift).astype(dtype)


def positive(*shape: int) -> np.ndarray:
    return RNG.uniform(0.2, 3.0, shape).astype(np.float32)


def ints(*shape: int, low: int = -3, high: int = 4, dtype=np.int64) -> np.ndarray:
    return RNG.integers(low, high, shape).astype(dtype)


def bools(*shape: int) -> np.ndarray:
    return RNG.random(shape) < 0.5


# Two sizes of the symbolic axes for each program that has them.
SIZES = [dict(batch=2, seq=3), dict(batch=1, seq=6)]

erf64 = np.vectorize(math.erf, otypes=[np.float64])


def f64(x):
    return np.asarray(x, dtype=np.float64)


# ---- elementwise: activations and unary functions -------------------------------------

UNARY = {  # name -> (expression, reference, input kind)
    "exp": ("exp(x)", np.exp, "any"),
    "log": ("log(x)", np.log, "pos"),
    "sqrt": ("sqrt(x)", np.sqrt, "pos"),
    "rsqrt": ("rsqrt(x)", lambda x: 1 / np.sqrt(x), "pos"),
    "tanh": ("tanh(x)", np.tanh, "any"),
    "sigmoid": ("sigmoid(x)", lambda x: 1 / (1 + np.exp(-x)), "any"),
    "sin": ("sin(x)", np.sin, "any"),
    "cos": ("cos(x)", np.cos, "any"),
    "erf": ("erf(x)", erf64, "any"),
    "relu": ("relu(x)", lambda x: np.where(x > 0, x, 0.0), "any"),
    "softplus": ("softplus(x)", lambda x: np.log1p(np.exp(x)), "any"),
    "silu": ("silu(x)", lambda x: x / (1 + np.exp(-x)), "any"),
    "gelu": ("gelu(x)", lambda x: 0.5 * x * (1 + erf64(x / math.sqrt(2))), "any"),
    "gelu_tanh": ("gelu_tanh(x)",
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), "any"),
    "neg": ("-x", np.negative, "any"),
    "abs": ("abs(x)", np.abs, "any"),
    "square": ("x ** 2", np.square, "any"),
    "scalar_ops": ("2 * x - 1 / (x * x + 1)", lambda x: 2 * x - 1 / (x * x + 1), "any"),
    "exp2": ("2 ** x", lambda x: 2.0 ** x, "any"),
    "min0": ("min(x, 0.5)", lambda x: np.minimum(x, 0.5), "any"),
    "max0": ("max(0, x)", lambda x: np.maximum(x, 0), "any"),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name):
    expr, ref, kind = UNARY[name]
    src = f"""
        axis batch, seq
        axis embed = 5
        model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {{
          return {expr}
        }}
    """
    make = positive if kind == "pos" else lambda *s: randn(*s, scale=2.0)
    xs = [make(s["batch"], s["seq"], 5) for s in SIZES]
    res = check(src, [{"x": x} for x in xs])
    for got, x in zip(res.outs(), xs):
        close(got, ref(f64(x)))


@pytest.mark.parametrize("approx", ["gelu", "gelu_tanh"])
def test_gelu_large_and_tiny_inputs(approx):
    """The tails and the origin, where an approximate erf or a careless formula drifts."""
    x = np.array([-12, -6, -3, -1e-3, 0, 1e-6, 0.5, 3, 6, 12], dtype=np.float32)
    src = f"""
        axis n = 10
        model M(x: f32[n]) -> f32[n] {{
          return {approx}(x)
        }}
    """
    out = check(src, {"x": x}).out
    _, ref, _ = UNARY[approx]
    close(out, ref(f64(x)), rtol=1e-6, atol=1e-7)


BINARY = {  # name -> (expression, reference, input kind)
    "add": ("a + b", np.add, "any"),
    "sub": ("a - b", np.subtract, "any"),
    "mul": ("a * b", np.multiply, "any"),
    "div": ("a / b", np.divide, "nonzero"),
    "pow": ("a ** b", np.power, "pos"),
    "minimum": ("min(a, b)", np.minimum, "any"),
    "maximum": ("max(a, b)", np.maximum, "any"),
    "nested": ("(a - b) * (a + b) / (1 + b * b)", lambda a, b: (a - b) * (a + b) / (1 + b * b), "any"),
}


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcasts_by_name(name):
    """`b` has its axes in another order and lacks `seq`: it aligns by name, not position."""
    expr, ref, kind = BINARY[name]
    src = f"""
        axis batch, seq
        axis embed = 4
        model M(a: f32[batch, seq, embed], b: f32[embed, batch]) -> f32[batch, seq, embed] {{
          return {expr}
        }}
    """
    runs = []
    for s in SIZES:
        a = positive(s["batch"], s["seq"], 4) if kind == "pos" else randn(s["batch"], s["seq"], 4)
        b = randn(4, s["batch"])
        if kind == "nonzero":
            b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
        runs.append({"a": a, "b": b})
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, ref(f64(r["a"]), f64(r["b"]).T[:, None, :]))


def test_broadcast_both_sides_and_result_layout():
    """Each side lacks an axis the other has; the declared result layout differs from both."""
    src = """
        axis batch, seq
        axis embed = 3
        model M(a: f32[seq, batch], b: f32[embed, seq]) -> f32[embed, batch, seq] {
          return a * b + a
        }
    """
    runs = [{"a": randn(s["seq"], s["batch"]), "b": randn(3, s["seq"])} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        a, b = f64(r["a"]).T, f64(r["b"])  # a: [batch, seq]
        close(got, a[None, :, :] * b[:, None, :] + a[None, :, :])


COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
           "==": np.equal, "!=": np.not_equal}


@pytest.mark.parametrize("op", list(COMPARE))
@pytest.mark.parametrize("dtype", ["f32", "i64"])
def test_comparisons(op, dtype):
    src = f"""
        axis batch, seq
        axis embed = 4
        model M(a: {dtype}[batch, seq, embed], b: {dtype}[embed, seq]) -> bool[batch, seq, embed] {{
          return a {op} b
        }}
    """
    np_dtype = np.float32 if dtype == "f32" else np.int64
    runs = [{"a": ints(s["batch"], s["seq"], 4, low=-2, high=3, dtype=np_dtype),
             "b": ints(4, s["seq"], low=-2, high=3, dtype=np_dtype)} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, COMPARE[op](r["a"], r["b"].T[None]))


def test_compare_with_scalar_and_logic():
    src = """
        axis batch, seq
        model M(x: f32[batch, seq], p: bool[seq], q: bool[batch, seq]) -> (
            a: bool[batch, seq], o: bool[batch, seq], n: bool[seq], mixed: bool[batch, seq]) {
          return p and q, q or p, not p, not x > 0 and (x < 1 or p)
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"]), "p": bools(s["seq"]), "q": bools(s["batch"], s["seq"])}
            for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        x, p, q = r["x"], r["p"], r["q"]
        np.testing.assert_array_equal(out["a"], p[None] & q)
        np.testing.assert_array_equal(out["o"], q | p[None])
        np.testing.assert_array_equal(out["n"], ~p)
        np.testing.assert_array_equal(out["mixed"], ~(x > 0) & ((x < 1) | p[None]))


def test_where():
    src = """
        axis batch, seq
        axis embed = 3
        model M(c: bool[seq], a: f32[batch, seq], b: f32[embed]) -> (
            w: f32[batch, seq, embed], s: f32[batch, seq], m: f32[batch, seq]) {
          return where(c, a, b), where(c, a, 0.0), where(a > 0, -1, a)
        }
    """
    runs = [{"c": bools(s["seq"]), "a": randn(s["batch"], s["seq"]), "b": randn(3)} for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        c, a, b = r["c"], f64(r["a"]), f64(r["b"])
        close(out["w"], np.where(c[None, :, None], a[:, :, None], b[None, None, :]))
        close(out["s"], np.where(c[None, :], a, 0.0))
        close(out["m"], np.where(a > 0, -1.0, a))


CASTS = [  # (from, to, input)
    ("f32", "i32", lambda n: randn(2, n, scale=4.0)),
    ("f32", "i64", lambda n: randn(2, n, scale=4.0)),
    ("f32", "f64", lambda n: randn(2, n)),
    ("f32", "f16", lambda n: randn(2, n)),
    ("f32", "bool", lambda n: ints(2, n, low=-1, high=2).astype(np.float32)),
    ("i64", "f32", lambda n: ints(2, n, low=-1000, high=1000)),
    ("bool", "f32", lambda n: bools(2, n)),
    ("bool", "i64", lambda n: bools(2, n)),
    ("i32", "i64", lambda n: ints(2, n, dtype=np.int32)),
]


@pytest.mark.parametrize("src_t,dst_t,make", [pytest.param(*c, id=f"{c[0]}->{c[1]}") for c in CASTS])
def test_cast(src_t, dst_t, make):
    src = f"""
        axis batch, seq
        model M(x: {src_t}[batch, seq]) -> {dst_t}[batch, seq] {{
          return cast(x, {dst_t})
        }}
    """
    runs = [{"x": make(n)} for n in (3, 5)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        want = r["x"].astype(DTYPES[dst_t])  # C casts: float -> int truncates toward zero
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_cast_feeds_float_math():
    src = """
        axis batch, seq
        model M(t: i64[batch, seq], x: f32[batch, seq]) -> f32[batch, seq] {
          return cast(t, f32) * x + cast(t > 0, f32)
        }
    """
    runs = [{"t": ints(s["batch"], s["seq"]), "x": randn(s["batch"], s["seq"])} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, r["t"] * f64(r["x"]) + (r["t"] > 0))


def test_integer_arithmetic():
    src = """
        axis seq
        model M(t: i64[seq], u: i64[seq]) -> i64[seq] {
          return abs(-t) * 3 + t * u - t * t + max(t, 0) - min(u, 1)
        }
    """
    runs = [{"t": ints(n, low=-9, high=9), "u": ints(n, low=-9, high=9)} for n in (3, 7)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        t, u = r["t"], r["u"]
        np.testing.assert_array_equal(got, np.abs(t) * 3 + t * u - t * t + np.maximum(t, 0) - np.minimum(u, 1))


def test_integer_division_after_a_cast():
    """`/` needs a float operand (see DTYPE_ERRORS); the cast its help line asks for works."""
    src = """
        axis seq
        model M(t: i64[seq]) -> f32[seq] {
          return cast(t, f32) / 2
        }
    """
    runs = [{"t": ints(n, low=-9, high=9)} for n in (4, 7)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, r["t"] / 2)


def test_scalar_input_and_output():
    src = """
        axis seq
        model M(s: f32[], x: f32[seq]) -> (y: f32[seq], total: f32[]) {
          return x * s, sum(x over seq) + s
        }
    """
    runs = [{"s": np.array(v, np.float32), "x": randn(n)} for v, n in ((2.0, 3), (-0.5, 5))]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        close(out["y"], f64(r["x"]) * float(r["s"]))
        close(out["total"], f64(r["x"]).sum() + float(r["s"]))


# Programs at the edges of the dtype rules that must be rejected: (signature, result type,
# expression, message, help line or None, column of the expression the diagnostic points at).
CAST_HELP = "convert first with `cast(x, f32)`"
BOOL_HELP = "convert first with `cast(x, i64)`, or use `and`, `or` and `not` on bools"
DTYPE_ERRORS = {
    "int_division": ("t: i64[seq]", "i64[seq]", "t / 2",
                     "`/` needs a floating-point operand, not i64", CAST_HELP, "t / 2"),
    "int_divides_float_literal": ("t: i64[seq]", "f32[seq]", "2.0 / t",
                                  "`/` needs a floating-point operand, not i64", CAST_HELP, "2.0 / t"),
    "int_power": ("t: i64[seq]", "i64[seq]", "t ** 2",
                  "`**` needs a floating-point operand, not i64", CAST_HELP, "t ** 2"),
    "float_literal_times_int": ("t: i64[seq]", "i64[seq]", "t * 0.5",
                                "0.5 meets an i64 tensor and would be truncated",
                                "convert the tensor first with `cast(x, f32)`", "0.5"),
    "float_literal_plus_int": ("t: i64[seq]", "i64[seq]", "t + 2.5",
                               "2.5 meets an i64 tensor and would be truncated",
                               "convert the tensor first with `cast(x, f32)`", "2.5"),
    "literal_out_of_range": ("t: i32[seq]", "i32[seq]", "t + 3000000000",
                             "3000000000 does not fit in i32", None, "3000000000"),
    "literal_out_of_range_u8": ("t: u8[seq]", "u8[seq]", "t + 256", "256 does not fit in u8", None, "256"),
    "negative_literal_for_u8": ("t: u8[seq]", "u8[seq]", "t + -1", "-1 does not fit in u8", None, "-1"),
    "sum_of_bools": ("p: bool[seq]", "bool[]", "sum(p over seq)",
                     "`sum` needs a numeric operand, not bool", CAST_HELP, "sum(p over seq)"),
    "max_of_bools": ("p: bool[seq]", "bool[]", "max(p over seq)",
                     "`max` needs a numeric operand, not bool", CAST_HELP, "max(p over seq)"),
    "prod_of_bools": ("p: bool[seq]", "bool[]", "prod(p over seq)",
                      "`prod` needs a numeric operand, not bool", CAST_HELP, "prod(p over seq)"),
    "mean_of_ints": ("t: i64[seq]", "i64[]", "mean(t over seq)",
                     "`mean` needs a floating-point operand, not i64", CAST_HELP, "mean(t over seq)"),
    "neg_of_bool": ("p: bool[seq]", "bool[seq]", "-p", "`-` needs numbers, not bool", BOOL_HELP, "-p"),
    "add_bools": ("p: bool[seq], q: bool[seq]", "bool[seq]", "p + q",
                  "`+` needs numbers, not bool", BOOL_HELP, "p + q"),
    "sub_bools": ("p: bool[seq], q: bool[seq]", "bool[seq]", "p - q",
                  "`-` needs numbers, not bool", BOOL_HELP, "p - q"),
    "mul_bools": ("p: bool[seq], q: bool[seq]", "bool[seq]", "p * q",
                  "`*` needs numbers, not bool", BOOL_HELP, "p * q"),
    "min_of_bools": ("p: bool[seq], q: bool[seq]", "bool[seq]", "min(p, q)",
                     "needs numbers, not bool", BOOL_HELP, "min(p, q)"),
    "max_of_two_bools": ("p: bool[seq], q: bool[seq]", "bool[seq]", "max(p, q)",
                         "needs numbers, not bool", BOOL_HELP, "max(p, q)"),
    "abs_of_bool": ("p: bool[seq]", "bool[seq]", "abs(p)", "`abs` needs numbers, not bool", BOOL_HELP, "abs(p)"),
}


@pytest.mark.parametrize("name", list(DTYPE_ERRORS))
def test_dtype_rule_errors(name):
    sig, result, expr, message, help_line, at = DTYPE_ERRORS[name]
    line = f"  return {expr}"
    src = f"axis seq\nmodel M({sig}) -> {result} {{\n{line}\n}}\n"
    err = compile_error(src)
    d = err.diagnostics[0]
    assert message in d.message, f"message {d.message!r} should say {message!r}"
    assert d.help == help_line
    assert d.span is not None and (d.span.line, d.span.column) == (3, line.index(at) + 1), \
        f"the diagnostic points at {d.span}, not at `{at}`"


# Programs at the edges of the dtype rules that no rule above decides: each must either be
# rejected with a CompileError or compile to backends that agree with each other and with the
# declared result type.
REJECT_OR_AGREE = {
    # name -> (signature, result type, expression, inputs)
    "int_plus_int": ("t: i64[seq]", "i64[seq]", "t + 2", {"t": np.array([1, -2], np.int64)}),
    "int_times_integral_float_literal": ("t: i64[seq]", "i64[seq]", "t * 2.0", {"t": np.array([1, -2], np.int64)}),
    "u8_wraps": ("t: u8[seq]", "u8[seq]", "t + 250", {"t": np.array([2, 4, 6], np.uint8)}),
    "bool_equality": ("p: bool[seq], q: bool[seq]", "bool[seq]", "(p != q) == (p and q)",
                      {"p": np.array([True, False, True]), "q": np.array([True, True, False])}),
    "concat_bools": ("p: bool[seq]", "bool[both]", "concat(p, not p over seq -> both)",
                     {"p": np.array([True, False])}),
    "exp_of_int": ("t: i64[seq]", "f32[seq]", "exp(t)", {"t": np.array([1, 2], np.int64)}),
    "relu_of_int": ("t: i64[seq]", "i64[seq]", "relu(t)", {"t": np.array([1, -2], np.int64)}),
    "contract_bools": ("p: bool[seq]", "bool[]", "(p @ p over seq)", {"p": np.array([True, False])}),
    "softmax_of_int": ("t: i64[seq]", "i64[seq]", "softmax(t over seq)", {"t": np.array([1, 2], np.int64)}),
}


@pytest.mark.parametrize("name", list(REJECT_OR_AGREE))
def test_dtype_rules_reject_or_agree(name):
    sig, result, expr, feed = REJECT_OR_AGREE[name]
    src = f"""
        axis seq
        model M({sig}) -> {result} {{
          return {expr}
        }}
    """
    try:
        compile_arch(src)
    except CompileError as e:
        assert e.diagnostics[0].message and e.diagnostics[0].span is not None
        return
    check(src, feed)  # compiled: every backend must agree, at the declared dtype


DTYPE_CASES = {  # expression -> reference on float64
    "gelu_tanh(x)": UNARY["gelu_tanh"][1],
    "sigmoid(x)": UNARY["sigmoid"][1],
    "silu(x)": UNARY["silu"][1],
    "exp(x) - sqrt(abs(x))": lambda x: np.exp(x) - np.sqrt(np.abs(x)),
    "softmax(x over embed)": lambda x: np.exp(x) / np.exp(x).sum(axis=2, keepdims=True),
    "layernorm(x over embed)": lambda x: ref_norm(x, (2,), "layernorm", 1e-5),
    "mean(x over seq) + x": lambda x: x.mean(axis=1, keepdims=True) + x,
}


@pytest.mark.parametrize("expr", list(DTYPE_CASES))
@pytest.mark.parametrize("dtype", ["f64", "f16"])
def test_other_float_dtypes(dtype, expr):
    """f64 and f16 flow through unchanged (f16 compared at f16 precision)."""
    src = f"""
        axis batch, seq
        axis embed = 4
        model M(x: {dtype}[batch, seq, embed]) -> {dtype}[batch, seq, embed] {{
          return {expr}
        }}
    """
    np_dtype = np.float64 if dtype == "f64" else np.float16
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "f64" else dict(rtol=4e-3, atol=4e-3)
    runs = [{"x": randn(s["batch"], s["seq"], 4, dtype=np_dtype)} for s in SIZES]
    res = check(src, runs, **tol)
    for got, r in zip(res.outs(), runs):
        assert got.dtype == np_dtype
        close(got, DTYPE_CASES[expr](f64(r["x"])), **(tol if dtype == "f16" else dict(rtol=1e-10, atol=1e-10)))


# ---- contraction -----------------------------------------------------------------------

CONTRACT = {
    # name -> (header, signature inputs, result type, expression, einsum reference, input shapes)
    "attention_scores": (
        "axis batch, seq, key\naxis head = 4",
        "q: f32[batch, seq, head], k: f32[batch, key, head]", "f32[batch, seq, key]",
        "(q @ k over head)", "bsh,bkh->bsk",
        {"q": ("batch", "seq", 4), "k": ("batch", "key", 4)}),
    "weighted_values": (
        "axis batch, seq, key\naxis head = 4",
        "a: f32[batch, seq, key], v: f32[batch, key, head]", "f32[batch, seq, head]",
        "(a @ v over key)", "bsk,bkh->bsh",
        {"a": ("batch", "seq", "key"), "v": ("batch", "key", 4)}),
    "two_axes": (
        "axis batch, seq\naxis heads = 2, head = 3",
        "a: f32[batch, heads, seq, head], b: f32[head, heads]", "f32[batch, seq]",
        "(a @ b over heads, head)", "bnsh,hn->bs",
        {"a": ("batch", 2, "seq", 3), "b": (3, 2)}),
    "batch_axis_not_contracted": (
        "axis batch, seq\naxis embed = 5",
        "x: f32[batch, seq, embed], w: f32[embed, batch]", "f32[batch, seq]",
        "(x @ w over embed)", "bse,eb->bs",
        {"x": ("batch", "seq", 5), "w": (5, "batch")}),
    "matrix_on_right_kn": (
        "axis batch, seq\naxis embed = 5, hidden = 3",
        "x: f32[batch, seq, embed], w: f32[embed, hidden]", "f32[batch, seq, hidden]",
        "(x @ w over embed)", "bse,eh->bsh",
        {"x": ("batch", "seq", 5), "w": (5, 3)}),
    "matrix_on_right_nk": (
        "axis batch, seq\naxis embed = 5, hidden = 3",
        "x: f32[batch, seq, embed], w: f32[hidden, embed]", "f32[batch, seq, hidden]",
        "(x @ w over embed)", "bse,he->bsh",
        {"x": ("batch", "seq", 5), "w": (3, 5)}),
    "contracted_axis_not_last": (
        "axis batch, seq\naxis embed = 5, hidden = 3",
        "x: f32[embed, batch, seq], w: f32[embed, hidden]", "f32[batch, seq, hidden]",
        "(x @ w over embed)", "ebs,eh->bsh",
        {"x": (5, "batch", "seq"), "w": (5, 3)}),
    "matrix_axis_already_on_left": (  # `hidden` is a batch axis, not a new one: no MatMul
        "axis batch\naxis embed = 5, hidden = 3",
        "x: f32[batch, hidden, embed], w: f32[embed, hidden]", "f32[batch, hidden]",
        "(x @ w over embed)", "bhe,eh->bh",
        {"x": ("batch", 3, 5), "w": (5, 3)}),
    "vector_dot_to_scalar": (
        "axis seq",
        "a: f32[seq], b: f32[seq]", "f32[]",
        "(a @ b over seq)", "s,s->",
        {"a": ("seq",), "b": ("seq",)}),
    "outer_axes_both_sides": (
        "axis batch, seq\naxis embed = 3, out = 2",
        "a: f32[seq, embed, batch], b: f32[out, embed]", "f32[batch, seq, out]",
        "(a @ b over embed)", "seb,oe->bso",
        {"a": ("seq", 3, "batch"), "b": (2, 3)}),
    "integer": (
        "axis batch, seq\naxis embed = 5, hidden = 3",
        "x: i64[batch, seq, embed], w: i64[embed, hidden]", "i64[batch, seq, hidden]",
        "(x @ w over embed)", "bse,eh->bsh",
        {"x": ("batch", "seq", 5), "w": (5, 3)}),
}


@pytest.mark.parametrize("name", list(CONTRACT))
def test_contract(name):
    header, args, result, expr, spec, shapes = CONTRACT[name]
    src = f"""
        {header.replace(chr(10), chr(10) + ' ' * 8)}
        model M({args}) -> {result} {{
          return {expr}
        }}
    """
    runs = []
    for s in [dict(batch=2, seq=3, key=4), dict(batch=3, seq=1, key=2)]:
        feed = {}
        for n, shape in shapes.items():
            dims = [s[d] if isinstance(d, str) else d for d in shape]
            feed[n] = ints(*dims) if "i64" in args else randn(*dims)
        runs.append(feed)
    res = check(src, runs)
    for got, feed in zip(res.outs(), runs):
        want = np.einsum(spec, *[f64(feed[n]) for n in shapes])
        if "i64" in args:
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want.astype(np.int64))
        else:
            close(got, want)


@pytest.mark.parametrize("layout", ["kn", "nk"])
def test_dense_layer_with_parameter(layout):
    """`x @ W` against a parameter contracts the shared axis, W stored [k, n] or [n, k]."""
    w_axes = "embed, hidden" if layout == "kn" else "hidden, embed"
    src = f"""
        axis batch, seq
        axis embed = 6, hidden = 4
        model M(x: f32[batch, seq, embed]) -> f32[batch, seq, hidden] {{
          param w: [{w_axes}]
          param b: [hidden] = normal(1.0)
          return x @ w + b
        }}
    """
    runs = [{"x": randn(s["batch"], s["seq"], 6)} for s in SIZES]
    res = check(src, runs)
    w = f64(res.params["w"])
    assert w.shape == ((6, 4) if layout == "kn" else (4, 6))
    op_types = [n.op_type for n in to_onnx(res.graph, res.params).graph.node]
    assert "MatMul" in op_types and "Einsum" not in op_types, f"no dense fast path: {op_types}"
    for got, r in zip(res.outs(), runs):
        want = np.einsum("bse,eh->bsh" if layout == "kn" else "bse,he->bsh", f64(r["x"]), w)
        close(got, want + f64(res.params["b"]))


def test_multi_head_projection_contracts_every_shared_axis():
    src = """
        axis batch, seq
        axis heads = 2, head = 3, embed = 4
        model M(x: f32[batch, seq, heads, head]) -> f32[batch, seq, embed] {
          param w: [heads, head, embed]
          return x @ w
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 2, 3)} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, np.einsum("bsnh,nhe->bse", f64(r["x"]), f64(res.params["w"])))


# ---- reductions and normalised exponentials ---------------------------------------------

REDUCE = ["sum", "mean", "max", "min", "prod"]
OVER = {  # over -> numpy axes of x: [batch, seq, embed]
    "embed": (2,), "seq": (1,), "batch, embed": (0, 2), "embed, batch": (0, 2), "batch, seq, embed": (0, 1, 2)}
OVER_RESULT = {"embed": "batch, seq", "seq": "batch, embed", "batch, embed": "seq", "embed, batch": "seq",
               "batch, seq, embed": ""}


@pytest.mark.parametrize("over", list(OVER))
@pytest.mark.parametrize("opset", [23, 17])
@pytest.mark.parametrize("op", REDUCE)
def test_reduce(op, opset, over):
    src = f"""
        axis batch, seq
        axis embed = 4
        model M(x: f32[batch, seq, embed]) -> f32[{OVER_RESULT[over]}] {{
          return {op}(x over {over})
        }}
    """
    runs = [{"x": randn(s["batch"], s["seq"], 4, scale=0.3, shift=1.0)} for s in SIZES]
    res = check(src, runs, opsets=(opset,))
    for got, r in zip(res.outs(), runs):
        x = f64(r["x"])
        ax = OVER[over]
        if op == "sum":
            want = x.sum(axis=ax)
        elif op == "mean":
            want = x.sum(axis=ax) / math.prod(x.shape[i] for i in ax)
        elif op == "prod":
            want = x
            for i in sorted(ax, reverse=True):
                want = np.multiply.reduce(want, axis=i)
        else:
            want = (x.max if op == "max" else x.min)(axis=ax)
        close(got, want)


@pytest.mark.parametrize("op", ["sum", "max", "min", "prod"])
def test_reduce_integers(op):
    src = f"""
        axis batch, seq
        model M(t: i64[batch, seq]) -> i64[batch] {{
          return {op}(t over seq)
        }}
    """
    runs = [{"t": ints(s["batch"], s["seq"])} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        np.testing.assert_array_equal(got, getattr(np, op)(r["t"], axis=1))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("over", ["key", "seq", "batch"])
def test_softmax(op, over):
    src = f"""
        axis batch, seq
        axis key = 5
        model M(x: f32[batch, seq, key]) -> f32[batch, seq, key] {{
          return {op}(x over {over})
        }}
    """
    runs = [{"x": randn(s["batch"], s["seq"], 5, scale=3.0)} for s in SIZES]
    res = check(src, runs)
    ax = {"batch": 0, "seq": 1, "key": 2}[over]
    for got, r in zip(res.outs(), runs):
        x = f64(r["x"])
        e = np.exp(x)
        want = e / e.sum(axis=ax, keepdims=True)
        close(got, want if op == "softmax" else np.log(want))


def test_softmax_of_large_logits_and_masked_scores():
    """Large logits must not overflow; a row of -inf but one stays finite."""
    src = """
        axis seq, key ~ seq
        model M(x: f32[seq, key]) -> (p: f32[seq, key], lp: f32[seq, key]) {
          s = x * 100 + causal(seq, key)
          return softmax(s over key), log_softmax(s over key)
        }
    """
    runs = [{"x": randn(n, n)} for n in (3, 6)]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        n = r["x"].shape[0]
        s = f64(r["x"]) * 100 + np.where(np.tril(np.ones((n, n))) > 0, 0.0, -np.inf)
        m = s.max(axis=1, keepdims=True)
        lp = s - m - np.log(np.exp(s - m).sum(axis=1, keepdims=True))
        close(out["p"], np.exp(lp))
        close(out["lp"], lp)


# ---- normalisations ----------------------------------------------------------------------

def ref_norm(x, axes, kind, eps, weight=None, bias=None):
    x = f64(x)
    if kind == "layernorm":
        mu = x.mean(axis=axes, keepdims=True)
        y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    else:
        y = x / np.sqrt((x ** 2).mean(axis=axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


NORM = {
    # name -> (x axes, over, weight axes or None, bias axes or None, numpy axes, weight/bias broadcast)
    "last": ("batch, seq, embed", "embed", "embed", "embed", (2,), lambda w: w),
    "last_weight_only": ("batch, seq, embed", "embed", "embed", None, (2,), lambda w: w),
    "last_plain": ("batch, seq, embed", "embed", None, None, (2,), None),
    "not_trailing": ("batch, embed, seq", "embed", "embed", "embed", (1,), lambda w: w[:, None]),
    "not_trailing_plain": ("batch, embed, seq", "embed", None, None, (1,), None),
    "two_axes": ("batch, chan, embed", "chan, embed", "chan, embed", "chan, embed", (1, 2), lambda w: w),
    "two_axes_weight_transposed": ("batch, chan, embed", "chan, embed", "embed, chan", "chan", (1, 2), None),
    "two_axes_plain": ("seq, chan, embed", "chan, embed", None, None, (1, 2), None),
    "two_axes_not_adjacent": ("chan, batch, embed", "chan, embed", "chan, embed", "embed", (0, 2), None),
    "over_listed_backwards": ("batch, chan, embed", "embed, chan", "chan, embed", None, (1, 2), lambda w: w),
}
SIZE_OF = {"chan": 3, "embed": 4}


def _norm_case(kind, name, eps=None):
    x_axes, over, w_axes, b_axes, np_axes, _ = NORM[name]
    params, args = [], ["x"]
    if w_axes:
        params.append(f"param w: [{w_axes}] = normal(1.0)")
        args.append("w")
    if b_axes and kind == "layernorm":
        params.append(f"param b: [{b_axes}] = normal(1.0)")
        args.append("b")
    eps_kw = f", eps={eps}" if eps is not None else ""
    src = f"""
        axis batch, seq
        axis chan = 3, embed = 4
        model M(x: f32[{x_axes}]) -> f32[{x_axes}] {{
          {chr(10).join(params)}
          return {kind}({', '.join(args)}{eps_kw} over {over})
        }}
    """
    return src, x_axes.split(", "), np_axes


def _aligned(p, name, x_axes, axes_text):
    """Parameter `name` (axes `axes_text`) transposed and expanded to broadcast against x."""
    if name not in p:
        return None
    axes = axes_text.split(", ")
    arr = np.transpose(f64(p[name]), [axes.index(a) for a in x_axes if a in axes])
    return arr.reshape([SIZE_OF[a] if a in axes else 1 for a in x_axes])


NORM_KINDS = [pytest.param(k, o, id=f"{k}-{o}") for k in ("layernorm", "rmsnorm") for o in (23, 17)]


@pytest.mark.parametrize("name", list(NORM))
@pytest.mark.parametrize("kind,opset", NORM_KINDS)
def test_norm(kind, opset, name):
    src, x_axes, np_axes = _norm_case(kind, name)
    dims = lambda s: [SIZE_OF.get(a) or s[a] for a in x_axes]
    runs = [{"x": randn(*dims(s), scale=2.0, shift=0.5)} for s in SIZES]
    res = check(src, runs, opsets=(opset,))
    _, _, w_axes, b_axes, _, _ = NORM[name]
    w = _aligned(res.params, "w", x_axes, w_axes) if w_axes else None
    b = _aligned(res.params, "b", x_axes, b_axes) if b_axes else None
    eps = 1e-5 if kind == "layernorm" else 1e-6
    for got, r in zip(res.outs(), runs):
        close(got, ref_norm(r["x"], np_axes, kind, eps, w, b))


@pytest.mark.parametrize("kind,opset", NORM_KINDS)
@pytest.mark.parametrize("affine", [True, False])
def test_norm_eps(kind, opset, affine):
    """A small input makes eps matter: the keyword must reach every backend."""
    src, x_axes, np_axes = _norm_case(kind, "last" if affine else "last_plain", eps=0.01)
    runs = [{"x": randn(2, n, 4, scale=0.05)} for n in (3, 5)]
    res = check(src, runs, opsets=(opset,))
    w = f64(res.params["w"]) if affine else None
    b = f64(res.params["b"]) if affine and kind == "layernorm" else None
    for got, r in zip(res.outs(), runs):
        close(got, ref_norm(r["x"], np_axes, kind, 0.01, w, b))
        assert not np.allclose(got, ref_norm(r["x"], np_axes, kind, 1e-5, w, b), rtol=1e-3)


def test_layernorm_over_symbolic_axis_without_weight():
    src = """
        axis batch, seq
        model M(x: f32[batch, seq]) -> f32[batch, seq] {
          return layernorm(x over seq)
        }
    """
    runs = [{"x": randn(2, n)} for n in (3, 6)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, ref_norm(r["x"], (1,), "layernorm", 1e-5))


def test_rmsnorm_over_symbolic_axis_without_weight():
    src = """
        axis batch, seq
        model M(x: f32[batch, seq]) -> f32[batch, seq] {
          return rmsnorm(x over seq)
        }
    """
    runs = [{"x": randn(2, n)} for n in (3, 6)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, ref_norm(r["x"], (1,), "rmsnorm", 1e-6))


BATCHNORM = {  # name -> (x axes, shape of x at batch=2); NCHW and NC take ONNX BatchNormalization
    "nchw": ("batch, chan, height, width", (2, 3, 4, 5)),
    "nc": ("batch, chan", (2, 3)),
    "nhwc": ("batch, height, width, chan", (2, 4, 5, 3)),
    "channel_first": ("chan, batch, height", (3, 2, 4)),
}


@pytest.mark.parametrize("name", list(BATCHNORM))
def test_batchnorm(name):
    x_axes, shape = BATCHNORM[name]
    src = f"""
        axis batch
        axis chan = 3, height = 4, width = 5
        model M(x: f32[{x_axes}]) -> f32[{x_axes}] {{
          param weight: [chan]
          param bias: [chan]
          param mean: [chan]
          param var: [chan]
          return batchnorm(x, weight, bias, mean, var, eps=0.001 over chan)
        }}
    """
    params = {"weight": randn(3), "bias": randn(3), "mean": randn(3), "var": positive(3)}
    names = x_axes.split(", ")
    c = names.index("chan")
    runs = [{"x": randn(*[n if a == "batch" else d for a, d in zip(names, shape)])} for n in (2, 1)]
    res = check(src, runs, params=params)
    bshape = [3 if i == c else 1 for i in range(len(names))]
    p = {k: f64(v).reshape(bshape) for k, v in params.items()}
    for got, r in zip(res.outs(), runs):
        close(got, (f64(r["x"]) - p["mean"]) / np.sqrt(p["var"] + 0.001) * p["weight"] + p["bias"])


# ---- rearrangement -----------------------------------------------------------------------

def test_split():
    src = """
        axis batch, seq
        axis embed = 6, heads = 2, head = 3
        model M(x: f32[batch, seq, embed]) -> (a: f32[batch, seq, heads, head], t: f32[batch, heads, seq, head]) {
          y = split(x, embed -> (heads, head))
          return y, y
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 6)} for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        b, s, _ = r["x"].shape
        # heads outermost: element (h, d) is embed index h * 3 + d
        want = np.empty((b, s, 2, 3))
        for h in range(2):
            for d in range(3):
                want[:, :, h, d] = r["x"][:, :, h * 3 + d]
        close(out["a"], want)
        close(out["t"], want.transpose(0, 2, 1, 3))


def test_split_symbolic_axis():
    src = """
        axis batch, seq
        axis two = 2, half = seq / 2
        model M(x: f32[batch, seq]) -> f32[batch, two, half] {
          return split(x, seq -> (half, two))
        }
    """
    runs = [{"x": randn(2, 4)}, {"x": randn(1, 10)}]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        b, s = r["x"].shape
        close(got, r["x"].reshape(b, s // 2, 2).transpose(0, 2, 1))


MERGE = {  # name -> (x axes, x dims, merged group, result axes, reference on x)
    "adjacent": ("batch, seq, heads, head", ("batch", "seq", 2, 3), "heads, head", "batch, seq, embed",
                 lambda x: x.reshape(x.shape[0], x.shape[1], 6)),
    "reversed_order": ("batch, seq, heads, head", ("batch", "seq", 2, 3), "head, heads", "batch, seq, embed",
                       lambda x: x.transpose(0, 1, 3, 2).reshape(x.shape[0], x.shape[1], 6)),
    "not_adjacent": ("batch, heads, seq, head", ("batch", 2, "seq", 3), "heads, head", "batch, seq, embed",
                     lambda x: x.transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], 6)),
    "not_adjacent_kept_layout": ("heads, batch, seq, head", (2, "batch", "seq", 3), "heads, head",
                                 "embed, batch, seq",
                                 lambda x: x.transpose(0, 3, 1, 2).reshape(6, x.shape[1], x.shape[2])),
    "symbolic": ("batch, seq, head", ("batch", "seq", 3), "batch, seq", "tokens, head",
                 lambda x: x.reshape(-1, 3)),
}


@pytest.mark.parametrize("name", list(MERGE))
def test_merge(name):
    x_axes, dims, group, result, ref = MERGE[name]
    into = "tokens" if name == "symbolic" else "embed"
    src = f"""
        axis batch, seq
        axis heads = 2, head = 3, embed = 6
        axis tokens = batch * seq
        model M(x: f32[{x_axes}]) -> f32[{result}] {{
          return merge(x, ({group}) -> {into})
        }}
    """
    runs = [{"x": randn(*[s[d] if isinstance(d, str) else d for d in dims])} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, ref(f64(r["x"])))


def test_merge_declares_a_new_axis_and_round_trips_split():
    src = """
        axis batch, seq
        axis heads = 2, head = 3, embed = 6
        model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {
          y = split(x, embed -> (heads, head))
          z = merge(y, (head, heads) -> swapped)
          back = merge(split(z, swapped -> (head, heads)), (heads, head) -> embed)
          return back + rename(z, swapped -> embed) * 0
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 6)} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, r["x"])


SLICES = {  # name -> (axis, arguments, reference slice)
    "start_end": ("embed", "start=2, end=6", slice(2, 6)),
    "positional": ("embed", "2, 6", slice(2, 6)),
    "negative_bounds": ("embed", "start=-5, end=-1", slice(-5, -1)),
    "step": ("embed", "start=1, step=3", slice(1, None, 3)),
    "step_negative_start": ("embed", "start=-7, end=-1, step=2", slice(-7, -1, 2)),
    "end_past_size": ("embed", "start=5, end=100", slice(5, None)),
    "symbolic_drop_last": ("seq", "end=-1", slice(None, -1)),
    "symbolic_drop_first": ("seq", "start=1", slice(1, None)),
    "symbolic_last_two": ("seq", "start=-2", slice(-2, None)),
    "symbolic_static_length": ("seq", "start=0, end=2", slice(0, 2)),
    "symbolic_middle": ("seq", "start=1, end=-1", slice(1, -1)),
    "symbolic_step_negative_start": ("seq", "start=-3, step=2", slice(-3, None, 2)),
}


@pytest.mark.parametrize("name", list(SLICES))
def test_slice(name):
    axis, args, sl = SLICES[name]
    src = f"""
        axis batch, seq
        axis embed = 8
        model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {{
          y = slice(x, {axis} -> part, {args})
          return x * sum(y over part)
        }}
    """
    # the sliced axis is summed and broadcast back, so the result keeps x's type
    runs = [{"x": randn(2, n, 8)} for n in (3, 6, 7)]
    res = check(src, runs)
    p = {"seq": 1, "embed": 2}[axis]
    for got, r in zip(res.outs(), runs):
        x = f64(r["x"])
        index = [slice(None)] * 3
        index[p] = sl
        close(got, x * x[tuple(index)].sum(axis=p, keepdims=True))


def test_strided_slice_of_a_symbolic_axis_is_refused():
    """Its length, ceil((seq - start) / step), is not a size the IR can express yet."""
    src = """
        axis batch, seq
        axis embed = 8
        model M(x: f32[batch, seq, embed]) -> f32[batch, embed] {
          return sum(slice(x, seq -> part, start=1, step=2) over part)
        }
    """
    with pytest.raises(CompileError) as e:
        check(src, [])
    assert "a strided slice of a symbolic axis needs a static size" in e.value.diagnostics[0].message


def test_slice_result_type():
    """The new axis has the exact (symbolic) size: `seq - 1` for `end=-1`."""
    src = """
        axis batch, seq
        axis prev = seq - 1
        axis embed = 8
        model M(x: f32[batch, seq, embed]) -> (a: f32[batch, prev, embed], b: f32[batch, seq, odd]) {
          return slice(x, seq -> prev, end=-1), slice(x, embed -> odd, start=1, step=2)
        }
    """
    runs = [{"x": randn(2, n, 8)} for n in (3, 6)]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        close(out["a"], r["x"][:, :-1])
        close(out["b"], r["x"][:, :, 1::2])


@pytest.mark.parametrize("axis,index", [("seq", 0), ("seq", -1), ("seq", 1), ("embed", 2), ("embed", -4)])
def test_select(axis, index):
    result = "batch, embed" if axis == "seq" else "batch, seq"
    src = f"""
        axis batch, seq
        axis embed = 4
        model M(x: f32[batch, seq, embed]) -> f32[{result}] {{
          return select(x, {axis}, {index})
        }}
    """
    runs = [{"x": randn(2, n, 4)} for n in (3, 6)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, r["x"][:, index] if axis == "seq" else r["x"][:, :, index])


def test_concat_two_axes_into_one():
    src = """
        axis batch, s1, s2
        axis embed = 3
        model M(a: f32[batch, s1, embed], b: f32[batch, s2, embed]) -> f32[batch, both, embed] {
          return concat(a, b over (s1, s2) -> both)
        }
    """
    runs = [{"a": randn(2, n1, 3), "b": randn(2, n2, 3)} for n1, n2 in ((2, 3), (4, 1))]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, np.concatenate([r["a"], r["b"]], axis=1))


def test_concat_same_axis_different_layouts():
    """Operands name their axes in other orders; the result follows the first operand."""
    src = """
        axis batch, seq
        axis embed = 3
        model M(a: f32[embed, batch, seq], b: f32[batch, seq, embed]) -> f32[batch, both, embed] {
          return concat(a, b, a over seq -> both)
        }
    """
    runs = [{"a": randn(3, s["batch"], s["seq"]), "b": randn(s["batch"], s["seq"], 3)} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        a = r["a"].transpose(1, 2, 0)
        close(got, np.concatenate([a, r["b"], a], axis=1))


def test_concat_operand_without_the_axis_broadcasts():
    """The ViT class token: [embed] joins [batch, patch, embed] as one slice, across batch."""
    src = """
        axis batch
        axis patch = 4, embed = 3
        model M(x: f32[batch, patch, embed]) -> f32[batch, tokens, embed] {
          param cls: [embed] = normal(1.0)
          return concat(cls, x over patch -> tokens)
        }
    """
    runs = [{"x": randn(n, 4, 3)} for n in (2, 1)]
    res = check(src, runs)
    cls = f64(res.params["cls"])
    for got, r in zip(res.outs(), runs):
        n = r["x"].shape[0]
        close(got, np.concatenate([np.tile(cls, (n, 1, 1)), r["x"]], axis=1))
    assert dict((a.name, a.size.value) for a in res.graph.outputs[0][1].type.axes)["tokens"] == 5


def test_concat_broadcasts_missing_other_axes():
    """`a` lacks `batch`, `c` is a scalar-like [embed]; all broadcast by name."""
    src = """
        axis batch, s1, s2
        axis embed = 3
        model M(a: f32[s1, embed], b: f32[embed, s2, batch], c: f32[embed]) -> f32[batch, both, embed] {
          return concat(a, b, c over (s1, s2) -> both)
        }
    """
    runs = [{"a": randn(n1, 3), "b": randn(3, n2, nb), "c": randn(3)} for n1, n2, nb in ((2, 3, 2), (1, 2, 3))]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        nb = r["b"].shape[2]
        a = np.broadcast_to(r["a"][None], (nb,) + r["a"].shape)
        b = r["b"].transpose(2, 1, 0)
        c = np.broadcast_to(r["c"], (nb, 1, 3))
        close(got, np.concatenate([a, b, c], axis=1))


def test_concat_integers():
    src = """
        axis seq
        model M(t: i64[seq]) -> i64[both] {
          return concat(t, 7, arange(seq) over seq -> both)
        }
    """
    runs = [{"t": ints(n)} for n in (2, 5)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        np.testing.assert_array_equal(got, np.concatenate([r["t"], [7], np.arange(len(r["t"]))]))


def ref_pad(x, axis, before, after, mode, value=0.0):
    """Padding by index arithmetic (no np.pad)."""
    n = x.shape[axis]
    if mode == "constant":
        shape = list(x.shape)
        shape[axis] = before + n + after
        out = np.full(shape, value, dtype=np.float64)
        index = [slice(None)] * x.ndim
        index[axis] = slice(before, before + n)
        out[tuple(index)] = x
        return out
    if mode == "edge":
        idx = np.clip(np.arange(-before, n + after), 0, n - 1)
    else:  # reflect: mirror without repeating the edge
        idx = np.concatenate([np.arange(before, 0, -1), np.arange(n), np.arange(n - 2, n - 2 - after, -1)])
    return np.take(x, idx, axis=axis)


PADS = {  # name -> (axis, before, after, keywords)
    "constant_zero": ("embed", 2, 1, ""),
    "constant_value": ("embed", 1, 3, ', value=1.5'),
    "constant_negative_value": ("seq", 2, 0, ", value=-2"),
    "constant_huge_negative": ("seq", 1, 1, ", value=-1e30"),   # a float, not bounded like a size
    "reflect": ("embed", 2, 3, ', mode="reflect"'),
    "reflect_seq": ("seq", 1, 1, ', mode="reflect"'),
    "edge": ("embed", 3, 2, ', mode="edge"'),
    "edge_seq": ("seq", 0, 2, ', mode="edge"'),
}


@pytest.mark.parametrize("name", list(PADS))
def test_pad(name):
    axis, before, after, extra = PADS[name]
    src = f"""
        axis batch, seq
        axis embed = 4
        model M(x: f32[batch, seq, embed]) -> f32[{'batch, seq, wide' if axis == 'embed' else 'batch, wide, embed'}] {{
          return pad(x, {axis} -> wide, before={before}, after={after}{extra})
        }}
    """
    runs = [{"x": randn(2, n, 4)} for n in (3, 5)]
    res = check(src, runs)
    value = float(extra.split("value=")[1]) if "value=" in extra else 0.0
    mode = extra.split('mode="')[1].rstrip('"') if "mode" in extra else "constant"
    for got, r in zip(res.outs(), runs):
        close(got, ref_pad(f64(r["x"]), {"seq": 1, "embed": 2}[axis], before, after, mode, value))


def test_stack_and_unstack():
    src = """
        axis batch, seq
        model M(q: f32[batch, seq], k: f32[seq, batch], v: f32[batch, seq]) -> (
            s: f32[three, batch, seq], a: f32[batch, seq], b: f32[seq, batch], c: f32[batch, seq]) {
          s = stack(q, k, v over three)
          a, b, c = unstack(s * 2 over three)
          return s, a, b, c
        }
    """
    runs = [{"q": randn(s["batch"], s["seq"]), "k": randn(s["seq"], s["batch"]), "v": randn(s["batch"], s["seq"])}
            for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        want = np.stack([r["q"], r["k"].T, r["v"]])
        close(out["s"], want)
        close(out["a"], 2 * want[0])
        close(out["b"], 2 * want[1].T)
        close(out["c"], 2 * want[2])


def test_unstack_inner_axis():
    src = """
        axis batch, seq
        axis three = 3
        model M(x: f32[batch, three, seq]) -> f32[batch, seq] {
          q, k, v = unstack(x over three)
          return q * k - v
        }
    """
    runs = [{"x": randn(s["batch"], 3, s["seq"])} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        x = f64(r["x"])
        close(got, x[:, 0] * x[:, 1] - x[:, 2])


# ---- indexing, positions, masks, wires -----------------------------------------------------

@pytest.mark.parametrize("dtype", ["i64", "i32"])
def test_embedding_lookup(dtype):
    """`wte[tokens]` gathers the table's first axis; negative ids count from the end."""
    src = f"""
        axis batch, seq
        axis vocab = 7, embed = 3
        model M(tokens: {dtype}[batch, seq]) -> f32[batch, seq, embed] {{
          param wte: [vocab, embed]
          return wte[tokens]
        }}
    """
    np_dtype = np.int64 if dtype == "i64" else np.int32
    runs = [{"tokens": ints(s["batch"], s["seq"], low=-7, high=7, dtype=np_dtype)} for s in SIZES]
    res = check(src, runs)
    wte = f64(res.params["wte"])
    for got, r in zip(res.outs(), runs):
        close(got, wte[r["tokens"]])


def test_gather_over_a_later_axis():
    src = """
        axis batch, pick
        axis vocab = 5, embed = 6
        model M(table: f32[vocab, embed, batch], idx: i64[pick]) -> f32[vocab, pick, batch] {
          return gather(table, idx over embed)
        }
    """
    runs = [{"table": randn(5, 6, nb), "idx": ints(npick, low=-6, high=6)} for nb, npick in ((2, 3), (1, 5))]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, r["table"][:, r["idx"], :])


def test_index_a_computed_value():
    src = """
        axis batch, seq
        axis embed = 3
        model M(x: f32[seq, embed], idx: i64[batch]) -> f32[batch, embed] {
          y = x * 2
          return y[idx]
        }
    """
    runs = [{"x": randn(n, 3), "idx": ints(4, low=0, high=n)} for n in (2, 5)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        close(got, 2 * f64(r["x"])[r["idx"]])


def test_arange_positions():
    src = """
        axis batch, seq
        axis ctx = 8, embed = 3
        model M(x: f32[batch, seq, embed]) -> (pos: i64[seq], h: f32[batch, seq, embed], f: f32[batch, seq]) {
          param wpe: [ctx, embed]
          p = arange(seq)
          return p, x + wpe[p], where(p > 0, sum(x over embed), 0.0)
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 3)} for s in SIZES]
    res = check(src, runs)
    wpe = f64(res.params["wpe"])
    for out, r in zip(res.outputs, runs):
        n = r["x"].shape[1]
        np.testing.assert_array_equal(out["pos"], np.arange(n))
        assert out["pos"].dtype == np.int64
        close(out["h"], f64(r["x"]) + wpe[:n])
        close(out["f"], np.where(np.arange(n) > 0, f64(r["x"]).sum(axis=2), 0.0))


def test_causal_mask():
    src = """
        axis batch, seq
        axis key ~ seq
        model M(x: f32[batch, seq]) -> (mask: f32[seq, key], y: f32[batch, seq, key]) {
          return causal(seq, key), x + causal(seq, key)
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"])} for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        n = r["x"].shape[1]
        mask = np.array([[0.0 if k <= q else -np.inf for k in range(n)] for q in range(n)])
        assert out["mask"].dtype == np.float32
        np.testing.assert_array_equal(out["mask"], mask)
        close(out["y"], f64(r["x"])[:, :, None] + mask)


def test_causal_mask_static_axes_of_different_sizes():
    src = """
        axis q = 3, k = 5
        model M(x: f32[q]) -> f32[q, k] {
          return x + causal(q, k)
        }
    """
    x = randn(3)
    res = check(src, {"x": x})
    mask = np.where(np.arange(5)[None, :] <= np.arange(3)[:, None], 0.0, -np.inf)
    close(res.out, f64(x)[:, None] + mask)


def test_rename_makes_a_new_wire():
    """`x + rename(x, seq -> key)` is an outer sum: the renamed wire broadcasts against seq."""
    src = """
        axis batch, seq
        axis key ~ seq
        axis embed = 2, e2 = 2
        model M(x: f32[batch, seq, embed]) -> f32[batch, seq, key, embed, e2] {
          return x * rename(x, seq -> key, embed -> e2)
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 2)} for s in SIZES]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        x = f64(r["x"])
        close(got, np.einsum("bse,bkf->bskef", x, x))


def test_axis_size_static():
    src = """
        axis batch, seq
        axis head = 4, heads = 3
        model M(x: f32[batch, seq, head], t: i64[seq]) -> (a: f32[batch, seq, head], m: i64[seq]) {
          return x / sqrt(|head|) * |heads| + |head| / 8, t * |heads|
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 4), "t": ints(s["seq"])} for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        close(out["a"], f64(r["x"]) / 2 * 3 + 0.5)
        np.testing.assert_array_equal(out["m"], r["t"] * 3)


def test_axis_size_symbolic():
    src = """
        axis batch, seq
        axis head = 4
        model M(x: f32[batch, seq, head]) -> (a: f32[batch, head], b: f32[batch, seq, head],
                                                n: f32[], m: i64[seq]) {
          return sum(x over seq) / |seq|, x / sqrt(|head|) * |batch|, |seq| * 1.0, arange(seq) * |batch|
        }
    """
    runs = [{"x": randn(s["batch"], s["seq"], 4)} for s in SIZES]
    res = check(src, runs)
    for out, r in zip(res.outputs, runs):
        b, s, _ = r["x"].shape
        x = f64(r["x"])
        close(out["a"], x.mean(axis=1))
        close(out["b"], x / 2 * b)
        close(out["n"], np.float64(s))
        np.testing.assert_array_equal(out["m"], np.arange(s) * b)


def test_axis_size_arithmetic_stays_weak():
    """`|seq| - 1` is a dtype-less scalar like `|seq|`, taking its partner's dtype."""
    src = """
        axis seq
        model M(x: f32[seq]) -> bool[seq] {
          return arange(seq) < |seq| - 1
        }
    """
    runs = [{"x": randn(n)} for n in (3, 5)]
    res = check(src, runs)
    for got, r in zip(res.outs(), runs):
        n = len(r["x"])
        np.testing.assert_array_equal(got, np.arange(n) < n - 1)


def test_symbolic_dims_are_named_in_onnx():
    src = """
        axis batch, seq
        axis embed = 3
        model M(x: f32[batch, seq, embed]) -> f32[batch, prev, embed] {
          return slice(x, seq -> prev, start=1)
        }
    """
    g = compile_arch(src)
    model = to_onnx(g, load_params(g, None, 0), opset=23)
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    assert dims(model.graph.input[0]) == ["batch", "seq", 3]
    out = dims(model.graph.output[0])
    assert out[0] == "batch" and out[2] == 3 and isinstance(out[1], str) and "seq" in out[1]


# ---- a small transformer layer: the families together ---------------------------------------

LAYER = """
    axis batch, seq
    axis key ~ seq
    axis embed = 8, heads = 2, head = embed / heads, hidden = 2 * embed, three = 3

    model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {
      param ln_w: [embed] = normal(1.0)
      param ln_b: [embed] = normal(1.0)
      param w_qkv: [embed, three, heads, head]
      param w_out: [heads, head, embed]
      param w_fc: [hidden, embed]
      param w_proj: [embed, hidden]
      h = layernorm(x, ln_w, ln_b over embed)
      q, k, v = unstack(h @ w_qkv over three)
      k = rename(k, seq -> key)
      v = rename(v, seq -> key)
      a = softmax((q @ k over head) / sqrt(|head|) + causal(seq, key) over key)
      x = x + (a @ v over key) @ w_out
      return x + rmsnorm(gelu_tanh(x @ w_fc) @ w_proj over embed)
    }
"""


def ref_layer(x, p):
    x, p = f64(x), {k: f64(v) for k, v in p.items()}
    n = x.shape[1]
    h = ref_norm(x, (2,), "layernorm", 1e-5, p["ln_w"], p["ln_b"])
    qkv = np.einsum("bse,etnd->tbsnd", h, p["w_qkv"])
    s = np.einsum("bqnd,bknd->bnqk", qkv[0], qkv[1]) / 2.0
    s = s + np.where(np.tril(np.ones((n, n))) > 0, 0.0, -np.inf)
    a = np.exp(s - s.max(axis=-1, keepdims=True))
    a = a / a.sum(axis=-1, keepdims=True)
    x = x + np.einsum("bnqk,bknd,nde->bqe", a, qkv[2], p["w_out"])
    f = np.einsum("bse,he->bsh", x, p["w_fc"])
    f = 0.5 * f * (1 + np.tanh(math.sqrt(2 / math.pi) * (f + 0.044715 * f ** 3)))
    m = np.einsum("bsh,eh->bse", f, p["w_proj"])
    return x + ref_norm(m, (2,), "rmsnorm", 1e-6)


@pytest.mark.parametrize("opset", OPSETS)
def test_transformer_layer(opset):
    runs = [{"x": randn(s["batch"], s["seq"], 8)} for s in SIZES]
    res = check(LAYER, runs, opsets=(opset,))
    for got, r in zip(res.outs(), runs):
        close(got, ref_layer(r["x"], res.params))


# ---- the generated module ----------------------------------------------------------------

MODULE_CASES = {
    "layer": (LAYER, lambda s: {"x": randn(s["batch"], s["seq"], 8)}),
    "softmax_named": ("""
        axis batch, seq
        axis key = 4
        model M(x: f32[batch, seq, key]) -> f32[batch, seq, key] {
          p = softmax(x over key)
          return p
        }""", lambda s: {"x": randn(s["batch"], s["seq"], 4)}),
    "gelu_unnamed": ("""
        axis batch, seq
        model M(x: f32[batch, seq]) -> f32[batch, seq] {
          return gelu(x)
        }""", lambda s: {"x": randn(s["batch"], s["seq"])}),
    "layernorm_unnamed": ("""
        axis batch, seq
        axis embed = 4
        model M(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {
          return layernorm(x over embed) + 1
        }""", lambda s: {"x": randn(s["batch"], s["seq"], 4)}),
    "rearrange_named": ("""
        axis batch, seq
        axis key ~ seq
        axis embed = 6, heads = 2, head = 3
        model M(x: f32[batch, seq, embed], t: i64[batch, seq]) -> (
            y: f32[batch, wide, heads, head, key], n: f32[batch, both]) {
          param table: [embed, heads]
          s = split(x, embed -> (heads, head))
          m = merge(s, (head, heads) -> e2)
          c = concat(select(x, seq, -1), slice(m, seq -> prev, end=-1) over (embed, prev) -> both)
          z = pad(s, seq -> wide, before=1, after=2, mode="reflect") + |head|
          mask = sum(where(causal(seq, key) < 0, 1.0, 2.0) over seq)
          k = sum(table[t] over seq)
          return z * k * mask, sum(c over e2)
        }""", lambda s: {"x": randn(s["batch"], s["seq"] + 2, 6),
                          "t": ints(s["batch"], s["seq"] + 2, low=0, high=6)}),
}


@pytest.mark.parametrize("name", list(MODULE_CASES))
def test_generated_module(name, tmp_path):
    src, make = MODULE_CASES[name]
    check(src, [make(s) for s in SIZES], module_dir=tmp_path, opsets=(23,))


# ---- type errors ---------------------------------------------------------------------------

# A block that meets `embed` with another size: it declares its own `embed` (4), shadowing the
# global one (6) that its argument carries.
SHADOWED = """
block B(x: f32[batch, seq, embed]) -> f32[batch, seq, embed] {
  axis embed = 4
  param w: [embed]
  return OP
}
"""

ERRORS = {
    # name -> (model body, result type, word the message must contain, text before the model)
    "softmax_missing_axis": ("return softmax(x over key)", "f32[batch, seq, embed]", "key", ""),
    "reduce_missing_axis": ("return sum(x over key)", "f32[batch, seq]", "key", ""),
    "split_wrong_product": ("return split(x, embed -> (heads, heads2))", "f32[batch, seq, heads, heads2]",
                            "embed", ""),
    "merge_into_declared_axis_wrong_size": ("return merge(split(x, embed -> (heads, head)), (heads, seq) -> embed)",
                                            "f32[batch, embed, head]", "embed", ""),
    "merge_into_declared_static_axis": ("return merge(split(x, embed -> (heads, head)), (heads, head) -> three)",
                                        "f32[batch, seq, three]", "three", ""),
    "concat_mixed_dtypes": ("return concat(x, t over seq -> both)", "f32[batch, both, embed]", "i64", ""),
    "concat_other_axis_sizes_differ": ("return B(x)", "f32[batch, seq, embed]", "embed",
                                       SHADOWED.replace("OP", "concat(x, w over seq -> both)")),
    "where_float_condition": ("return where(x, x, x)", "f32[batch, seq, embed]", "bool", ""),
    "gather_float_indices": ("return gather(x, y over embed)", "f32[batch, seq, seq, seq2]", "f32", ""),
    "gather_missing_axis": ("return gather(x, t over vocab)", "f32[batch, seq, embed]", "vocab", ""),
    "layernorm_weight_extra_axis": ("param w: [heads, embed]\n  return layernorm(x, w over embed)",
                                    "f32[batch, seq, embed]", "heads", ""),
    "layernorm_bias_extra_axis": ("param w: [embed]\n  param b: [head]\n  return layernorm(x, w, b over embed)",
                                  "f32[batch, seq, embed]", "head", ""),
    "layernorm_missing_axis": ("return layernorm(x over heads)", "f32[batch, seq, embed]", "heads", ""),
    "rmsnorm_weight_extra_axis": ("param w: [heads, embed]\n  return rmsnorm(x, w over embed)",
                                  "f32[batch, seq, embed]", "heads", ""),
    "layernorm_weight_wrong_size": ("return B(x)", "f32[batch, seq, embed]", "embed",
                                    SHADOWED.replace("OP", "layernorm(x, w over embed)")),
    "batchnorm_stat_axes": ("param w: [embed]\n  param m: [heads]\n  return batchnorm(x, w, w, m, w over embed)",
                            "f32[batch, seq, embed]", "embed", ""),
    "causal_same_axis_twice": ("return x + causal(seq, seq)", "f32[batch, seq, embed]", "seq", ""),
    "contract_missing_axis": ("return (x @ y over heads)", "f32[batch, seq, embed, seq2]", "heads", ""),
    "contract_size_mismatch": ("return B(x)", "f32[batch, seq, embed]", "embed",
                               SHADOWED.replace("OP", "x - (x @ w over embed)")),
    "elementwise_size_mismatch": ("return B(x)", "f32[batch, seq, embed]", "embed",
                                  SHADOWED.replace("OP", "x + w")),
    "slice_missing_axis": ("return slice(x, heads -> part, start=1)", "f32[batch, seq, embed]", "heads", ""),
    "slice_empty": ("return slice(x, embed -> part, start=6)", "f32[batch, seq, part]", "embed", ""),
    "select_out_of_range": ("return select(x, embed, 6)", "f32[batch, seq]", "embed", ""),
    "unstack_symbolic": ("a, b = unstack(x over seq)\n  return a", "f32[batch, embed]", "seq", ""),
    "stack_different_axes": ("return stack(x, y over pair)", "f32[pair, batch, seq, embed]", "seq2", ""),
    "rename_size_mismatch": ("return rename(x, embed -> heads)", "f32[batch, seq, heads]", "heads", ""),
    "pad_missing_axis": ("return pad(x, heads -> wide, before=1)", "f32[batch, seq, embed]", "heads", ""),
    "not_on_floats": ("return not x", "bool[batch, seq, embed]", "f32", ""),
    "softmax_of_integers": ("return softmax(t over seq)", "f32[batch, seq]", "i64", ""),
}

ERROR_SOURCE = """
axis batch, seq, seq2
axis embed = 6, heads = 2, heads2 = 2, head = 3, three = 3
{pre}
model M(x: f32[batch, seq, embed], y: f32[batch, seq, seq2], t: i64[batch, seq]) -> {result} {{
  {body}
}}
"""

@pytest.mark.parametrize("name", list(ERRORS))
def test_type_error(name):
    body, result, word, pre = ERRORS[name]
    err = compile_error(ERROR_SOURCE.format(result=result, body=body, pre=pre))
    d = err.diagnostics[0]
    assert word in d.message, f"message {d.message!r} should name `{word}`"
    assert d.span is not None, "the diagnostic should point at the source"
