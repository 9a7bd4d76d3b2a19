"""Golden printouts of each pipeline stage: the IR (`archc ir`) and the NumPy module
(`archc emit-numpy`). A change in the compiler shows up as a reviewable diff of these
files; regenerate them with `pytest --bless` and read the diff."""
from pathlib import Path

import pytest

from archlang.backends.numpy_codegen import emit_module
from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph
from archlang.compiler.ir import print_graph

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"

CASES = {
    "mlp": ("mlp.arch", {}),
    "gpt2_small": ("gpt2.arch", {"layers": "1", "embed": "64", "heads": "4", "vocab": "100", "ctx": "32"}),
    "vit_small": ("vit.arch", {"depth": "1", "embed": "32", "heads": "2", "height": "32", "width": "32",
                               "classes": "10"}),
    "rnn": ("rnn.arch", {}),   # a `scan`: the body graph printed under its node
}


def check_golden(path: Path, text: str, bless: bool) -> None:
    if bless or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed; rerun with --bless and review the diff"


@pytest.mark.parametrize("name", sorted(CASES))
def test_ir_printout(name, bless):
    file, sets = CASES[name]
    graph = load_graph(str(REPO / "examples" / file), SourceCache(), sets)
    check_golden(GOLDEN / f"{name}.ir", print_graph(graph), bless)


@pytest.mark.parametrize("name", ["gpt2_small", "vit_small", "rnn"])
def test_ir_printout_after_passes(name, bless):
    """The IR at -O2: what the passes fused, folded and reordered, as a reviewable diff."""
    from archlang.compiler.passes import optimize
    file, sets = CASES[name]
    graph = load_graph(str(REPO / "examples" / file), SourceCache(), sets)
    optimize(graph, 2)
    check_golden(GOLDEN / f"{name}.O2.ir", print_graph(graph), bless)


@pytest.mark.parametrize("name", ["mlp", "gpt2_small", "rnn"])
def test_numpy_module(name, bless):
    file, sets = CASES[name]
    graph = load_graph(str(REPO / "examples" / file), SourceCache(), sets)
    check_golden(GOLDEN / f"{name}.numpy.py.txt", emit_module(graph, file), bless)


def test_printout_is_stable():
    """Two builds of one file print the same text (no ids, addresses or set order leak)."""
    file, sets = CASES["gpt2_small"]
    a = print_graph(load_graph(str(REPO / "examples" / file), SourceCache(), sets))
    b = print_graph(load_graph(str(REPO / "examples" / file), SourceCache(), sets))
    assert a == b


@pytest.mark.parametrize("name", ["mlp", "gpt2_small", "vit_small"])
def test_numpy_module_runs_and_matches_the_evaluator(name, tmp_path):
    import importlib.util

    import numpy as np

    from archlang.backends.numpy_codegen import run_graph
    from archlang.compiler.driver import load_params

    file, sets = CASES[name]
    graph = load_graph(str(REPO / "examples" / file), SourceCache(), sets)
    module_path = tmp_path / f"{name}_ref.py"
    module_path.write_text(emit_module(graph, file))
    spec = importlib.util.spec_from_file_location(module_path.stem, module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, {"mlp": "mlp", "gpt2_small": "gpt2", "vit_small": "vit"}[name])
    rng = np.random.default_rng(0)
    params = load_params(graph, None, seed=1)
    inputs = {}
    for input_name, v in graph.inputs:
        shape = [a.size.value if a.size.is_static else 5 for a in v.type.axes]
        inputs[input_name] = (rng.integers(0, 10, shape) if v.type.dtype == "i64"
                              else rng.standard_normal(shape).astype(np.float32))
    got = fn(params, **inputs)
    want = run_graph(graph, params, inputs)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
