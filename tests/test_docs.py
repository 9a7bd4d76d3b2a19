"""The documentation is executable: every example in docs/language.md (and README.md)
compiles, and runs to the same numbers in NumPy and ONNX.

Conventions for fenced blocks in the docs (see the top of docs/language.md):

- ```arch        a complete program (it has a `model`): `archc check` must accept it, and
                 the NumPy reference and onnxruntime must agree on random inputs.
                 Exception: a block whose first line is `# file: NAME.arch` is a library
                 file. It is not compiled alone; it is written beside every other example
                 of the same document, so an example can `use "NAME.arch"`.
- ```arch-error  a program `archc check` must reject. The ```text block that follows it
                 shows what the user sees: each of its non-empty lines must appear, in
                 order, in the rendered diagnostics (the file is compiled as `model.arch`).

docs/ops.md is generated from the op registry by docs/gen_ops.py and must be up to date.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from archlang.compiler.diagnostics import CompileError, SourceCache, render
from archlang.compiler.driver import load_graph, load_params
from archlang.compiler.ops import REGISTRY

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
LANGUAGE = DOCS / "language.md"
DOCUMENTS = [p for p in (LANGUAGE, REPO / "README.md") if p.exists()]

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<tag>[A-Za-z0-9_-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
LIBRARY = re.compile(r"^#\s*file:\s*(?P<name>\S+\.arch)\s*$")

# Sizes for symbolic axes when the examples run: `batch` is 2, every other symbol 4
# (even, so sizes like `seq / 2` divide).
SYMBOL_SIZES = {"batch": 2}
DEFAULT_SYMBOL = 4
TOLERANCE = 1e-5  # f32 and f64 outputs; f16 outputs are compared within one f16 rounding step
TOLERANCE_F16 = 2e-3



@dataclass(frozen=True)
class Example:
    doc: Path
    line: int  # of the opening fence
    tag: str  # "arch" | "arch-error"
    source: str
    expected: str = ""  # the ```text block after an arch-error

    @property
    def library(self) -> str | None:
        first = self.source.split("\n", 1)[0]
        m = LIBRARY.match(first)
        return m["name"] if m else None

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line of the opening fence, tag, body) of each fenced block, in order."""
    return [(text.count("\n", 0, m.start()) + 1, m["tag"], m["body"]) for m in FENCE.finditer(text)]


def examples(doc: Path) -> list[Example]:
    blocks = fenced_blocks(doc.read_text(encoding="utf-8"))
    out = []
    for i, (line, tag, body) in enumerate(blocks):
        if tag == "arch":
            out.append(Example(doc, line, tag, body))
        elif tag == "arch-error":
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            if following is None or following[1] != "text":
                raise AssertionError(f"{doc.name}:{line}: an ```arch-error block must be followed by a ```text "
                                     "block with the expected message")
            out.append(Example(doc, line, tag, body, following[2]))
    return out


ALL = [e for d in DOCUMENTS for e in examples(d)]
PROGRAMS = [e for e in ALL if e.tag == "arch" and e.library is None]
ERRORS = [e for e in ALL if e.tag == "arch-error"]


def write_example(ex: Example, where: Path) -> Path:
    """The example as `model.arch` in `where`, with the document's library files beside it."""
    for lib in ALL:
        if lib.doc == ex.doc and lib.library:
            (where / lib.library).write_text(lib.source, encoding="utf-8")
    path = where / "model.arch"
    path.write_text(ex.source, encoding="utf-8")
    return path


def compile_in(where: Path, sources: SourceCache):
    """Compile `model.arch` by its relative name, so diagnostics read `model.arch:L:C`."""
    old = os.getcwd()
    os.chdir(where)
    try:
        return load_graph("model.arch", sources, {})
    finally:
        os.chdir(old)


def random_inputs(graph, seed: int = 0) -> dict[str, np.ndarray]:
    from archlang.backends.numpy_codegen import _np_dtype, eval_size
    rng = np.random.default_rng(seed)
    symbols = {s: SYMBOL_SIZES.get(s, DEFAULT_SYMBOL) for s in graph.symbols}
    out = {}
    for name, v in graph.inputs:
        shape = [eval_size(a.size, symbols) for a in v.type.axes]
        dtype = np.dtype(_np_dtype(v.type.dtype))
        if v.type.dtype == "bool":
            out[name] = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            out[name] = rng.integers(0, 2, shape).astype(dtype)  # ids: every table in the docs has >= 2 rows
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    return out


def test_the_docs_have_examples() -> None:
    assert LANGUAGE.exists()
    assert len([e for e in PROGRAMS if e.doc == LANGUAGE]) >= 30
    assert len([e for e in ERRORS if e.doc == LANGUAGE]) >= 3


@pytest.mark.parametrize("ex", PROGRAMS, ids=lambda e: e.id)
def test_example_compiles_and_numpy_matches_onnx(ex: Example, tmp_path: Path) -> None:
    import onnxruntime as ort

    from archlang.backends.numpy_codegen import run_graph
    from archlang.backends.onnx_export import to_onnx

    write_example(ex, tmp_path)
    sources = SourceCache()
    try:
        graph = compile_in(tmp_path, sources)
    except CompileError as e:
        pytest.fail(f"{ex.id}: the example does not compile:\n" + "\n".join(render(d, sources) for d in e.diagnostics))
    params = load_params(graph, None, seed=0)
    inputs = random_inputs(graph)
    expected = run_graph(graph, params, inputs)
    session = ort.InferenceSession(to_onnx(graph, params).SerializeToString(), providers=["CPUExecutionProvider"])
    names = [n for n, _ in graph.outputs]
    got = dict(zip(names, session.run(names, {n: inputs[n] for n, _ in graph.inputs})))
    for name in names:
        assert got[name].shape == expected[name].shape, f"{ex.id}: output `{name}`"
        assert got[name].dtype == expected[name].dtype, f"{ex.id}: output `{name}`"
        tol = TOLERANCE_F16 if expected[name].dtype == np.float16 else TOLERANCE
        np.testing.assert_allclose(got[name], expected[name], rtol=tol, atol=tol,
                                   err_msg=f"{ex.id}: output `{name}`, ONNX vs NumPy")


@pytest.mark.parametrize("ex", ERRORS, ids=lambda e: e.id)
def test_error_example_fails_with_the_documented_message(ex: Example, tmp_path: Path) -> None:
    write_example(ex, tmp_path)
    sources = SourceCache()
    with pytest.raises(CompileError) as info:
        compile_in(tmp_path, sources)
    rendered = "\n".join(render(d, sources) for d in info.value.diagnostics)
    want = [line for line in ex.expected.splitlines() if line.strip()]
    assert want, f"{ex.id}: the ```text block after it is empty"
    got = rendered.splitlines()
    i = 0
    for line in want:
        while i < len(got) and got[i].rstrip() != line.rstrip():
            i += 1
        assert i < len(got), (f"{ex.id}: the documented message line\n  {line}\nis not in what archc says "
                              f"(in order):\n{rendered}")
        i += 1


def test_library_files_are_used() -> None:
    for lib in (e for e in ALL if e.library):
        users = [e for e in ALL if e.doc == lib.doc and f'use "{lib.library}"' in e.source]
        assert users, f"{lib.id}: library file {lib.library} is used by no example"


def test_documented_commands_exist() -> None:
    """Every `$ archc COMMAND` line in the docs names a real subcommand."""
    from archlang.compiler.cli import make_parser
    sub = next(a for a in make_parser()._actions if a.dest == "command")
    for doc in DOCUMENTS:
        for line, tag, body in fenced_blocks(doc.read_text(encoding="utf-8")):
            for cmd in re.findall(r"^\$ archc (\S+)", body, re.M):
                assert cmd in sub.choices, f"{doc.name}:{line}: `archc {cmd}` is not a command"


# ---- the op reference ------------------------------------------------------------

def _gen_ops():
    spec = importlib.util.spec_from_file_location("gen_ops", DOCS / "gen_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ops_md_is_generated_from_the_registry() -> None:
    committed = (DOCS / "ops.md").read_text(encoding="utf-8")
    assert committed == _gen_ops().render(), "docs/ops.md is stale: run `python docs/gen_ops.py`"


def test_every_surface_op_is_taught() -> None:
    """Every op is shown in use: called by name in the text, or, for the ops whose name is
    a reserved keyword (`and`, `or`, `not`, written only as operators), used as an
    operator in a tested ```arch example."""
    from archlang.grammar.parse import KEYWORDS
    text = LANGUAGE.read_text(encoding="utf-8")
    code = "\n".join(e.source for e in PROGRAMS if e.doc == LANGUAGE)
    missing = []
    for name, op in REGISTRY.items():
        if not op.surface:
            continue
        if name in KEYWORDS:
            used = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)} +[A-Za-z0-9_(]", code)
        else:
            used = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}\(", text)
        if not used:
            missing.append(name)
    assert not missing, f"docs/language.md never shows these ops used: {', '.join(missing)}"


def test_every_surface_op_is_in_ops_md() -> None:
    text = (DOCS / "ops.md").read_text(encoding="utf-8")
    missing = [name for name, op in REGISTRY.items() if op.surface and f"`{name}`" not in text]
    assert not missing, missing


# ---- the harness itself ----------------------------------------------------------

def test_fence_parsing() -> None:
    text = "a\n```arch\nmodel M() {}\n```\n\n```arch-error\nbad\n```\n```text\nm.arch:1:1: error: x\n```\n"
    assert fenced_blocks(text) == [(2, "arch", "model M() {}\n"), (6, "arch-error", "bad\n"),
                                   (9, "text", "m.arch:1:1: error: x\n")]


def test_relative_position_recipe_is_swins_index(tmp_path):
    """The recipe's bias is table[index] with Swin's relative_position_index, written here as
    the reference code computes it (coords meshgrid, pairwise differences, shift, scale)."""
    from archlang.backends.numpy_codegen import run_graph
    recipe = next(e for e in PROGRAMS if "model RelativeBias" in e.source)
    write_example(recipe, tmp_path)
    graph = compile_in(tmp_path, SourceCache())
    wh, ww, heads = 3, 4, 2
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)   # [2, tokens]
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)                     # [tokens, key, 2]
    relative[:, :, 0] += wh - 1
    relative[:, :, 1] += ww - 1
    relative[:, :, 0] *= 2 * ww - 1
    index = relative.sum(-1)
    table = np.random.default_rng(0).standard_normal(((2 * wh - 1) * (2 * ww - 1), heads)).astype(np.float32)
    scores = np.zeros((1, heads, wh * ww, wh * ww), dtype=np.float32)
    got = run_graph(graph, {"bias_table": table}, {"scores": scores})["output"]
    np.testing.assert_array_equal(got[0], table[index].transpose(2, 0, 1))
