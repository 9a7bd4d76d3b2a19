"""Every example at every -O level computes what it computes at -O0.

The reference is the -O0 graph run by the NumPy backend; the optimised graph is run by both
backends (NumPy in-process, onnxruntime on the exported model) on the same weights and
inputs, at the small variants of tests/test_examples.py. Slow: the full-size examples.
"""
from __future__ import annotations

import numpy as np
import pytest

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.driver import load_params
from archlang.compiler.passes import optimize

from pass_checks import run_onnx
from test_examples import FULL_SYMBOLS, NAMES, SMALL, SMALL_SYMBOLS, build, random_inputs, seed_of

TOL = dict(rtol=1e-5, atol=1e-5)


def check_level(name: str, sets: dict, level: int, symbols: dict, opset: int = 23) -> None:
    reference = build(name, sets)
    params = load_params(reference, None, seed=seed_of(name))
    inputs = random_inputs(reference, symbols, seed_of(name))
    want = run_graph(reference, params, inputs)
    optimised = build(name, sets)
    optimize(optimised, level)
    got_numpy = run_graph(optimised, params, inputs)
    got_onnx = run_onnx(to_onnx(optimised, params, opset), inputs)
    for k, ref in want.items():
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        for backend, got in (("numpy", got_numpy[k]), ("onnx", got_onnx[k])):
            assert got.shape == ref.shape and got.dtype == ref.dtype, (backend, k)
            np.testing.assert_allclose(got, ref, rtol=TOL["rtol"], atol=TOL["atol"] * scale,
                                       err_msg=f"{name} -O{level} {backend} output {k}")


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("name", [n for n in NAMES if n in SMALL])
def test_small_variant_matches_O0(name, level):
    check_level(name, SMALL[name], level, SMALL_SYMBOLS[0])


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
def test_small_variant_matches_O0_at_opset_17(name):
    check_level(name, SMALL[name], 2, SMALL_SYMBOLS[1], opset=17)


# Full size where the small variant differs; ALBERT's full size (222M parameters run twice
# in NumPy) takes minutes and adds nothing its small variant's shared layer does not test.
FULL = [n for n in NAMES if SMALL.get(n) and n != "albert"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_matches_O0(name):
    check_level(name, {}, 2, FULL_SYMBOLS)


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "vit", "resnet50"])
def test_generated_module_at_O2_matches_the_evaluator(name, tmp_path):
    """`archc emit-numpy -O2` writes the fused ops' kernels into the module: it computes what
    the in-process evaluator computes on the same optimised graph."""
    import importlib.util

    from archlang.backends.numpy_codegen import emit_module
    graph = build(name, SMALL[name])
    optimize(graph, 2)
    path = tmp_path / f"{name}_O2.py"
    path.write_text(emit_module(graph, f"{name}.arch"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = load_params(graph, None, seed=seed_of(name))
    inputs = random_inputs(graph, SMALL_SYMBOLS[0], seed_of(name))
    got = getattr(module, graph.name.lower())(params, **inputs)
    for k, want in run_graph(graph, params, inputs).items():
        np.testing.assert_allclose(got[k], want, rtol=1e-6, atol=1e-6, err_msg=f"{name} output {k}")
