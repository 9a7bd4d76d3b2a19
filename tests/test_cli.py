"""`archc` end to end, through a subprocess as a user runs it.

Exit codes: 0 ok, 1 an error in the user's input, 2 a usage error. Errors read
`file:line:col: error: …` with no Python traceback, and a failed command never
touches an existing output file.
"""
from __future__ import annotations

import ast as pyast
import importlib.util
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from archlang.compiler.diagnostics import SourceCache
from archlang.compiler.driver import load_graph, load_params

COMMANDS = ["check", "compile", "run", "emit-numpy", "ir"]

TYPE_ERROR = """
axis batch, embed = 8, hidden = 4

model M(x: f32[batch, embed]) -> f32[batch, embed] {
  return softmax(x over hidden)
}
"""


def graph_of(path: Path, sets: dict[str, str] | None = None):
    return load_graph(str(path), SourceCache(), sets or {})


def sample_inputs(path: Path, batch: int = 3, seed: int = 7) -> dict[str, np.ndarray]:
    """Inputs for a model with one symbolic axis (`batch`), read from its signature."""
    graph = graph_of(path)
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in graph.inputs:
        shape = [a.size.value if a.size.is_static else batch for a in v.type.axes]
        assert v.type.dtype == "f32", "sample_inputs handles float inputs only"
        out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_no_traceback(r) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert "internal error" not in r.stderr, r.stderr


# ---- each command on examples/mlp.arch ------------------------------------------------

def test_check(archc, mlp_path):
    r = archc("check", mlp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r": ok: model `MLP`, \d+ nodes, [\d,]+ parameters", r.stdout)
    assert r.stderr == ""


def test_ir_is_stable_and_typed(archc, mlp_path):
    r1, r2 = archc("ir", mlp_path), archc("ir", mlp_path)
    assert r1.returncode == 0, r1.stderr
    assert r1.stdout == r2.stdout
    assert r1.stdout.startswith("graph MLP {") and r1.stdout.rstrip().endswith("}")
    assert "input %0: f32[batch, features=784]" in r1.stdout
    assert re.search(r"output output = %\d+: f32\[batch, classes=10\]", r1.stdout)


def test_compile_writes_a_valid_onnx_model_with_a_dynamic_batch(archc, mlp_path, tmp_path):
    out = tmp_path / "mlp.onnx"
    r = archc("compile", mlp_path, "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr.startswith(f"wrote {out}")
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out))
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 784
    (outp,) = model.graph.output
    assert outp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.onnx"], "temporary files left behind"


def test_compile_twice_gives_identical_bytes(archc, mlp_path, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert archc("compile", mlp_path, "-o", a).returncode == 0
    assert archc("compile", mlp_path, "-o", b).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def test_run_numpy_and_onnx_backends_agree(archc, mlp_path, tmp_path):
    inputs = tmp_path / "in.npz"
    np.savez(inputs, **sample_inputs(mlp_path))
    outs = {}
    for backend in ("numpy", "onnx"):
        out = tmp_path / f"{backend}.npz"
        r = archc("run", mlp_path, "--backend", backend, "--inputs", inputs, "--output", out)
        assert r.returncode == 0, r.stderr
        outs[backend] = load_npz(out)
    assert list(outs["numpy"]) == list(outs["onnx"]) == ["output"]
    a, b = outs["numpy"]["output"], outs["onnx"]["output"]
    assert a.shape == b.shape == (3, 10) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_run_without_inputs_uses_random_ones(archc, mlp_path, tmp_path):
    out = tmp_path / "o.npz"
    r = archc("run", mlp_path, "--output", out)
    assert r.returncode == 0, r.stderr
    (y,) = load_npz(out).values()
    assert y.ndim == 2 and y.shape[1] == 10 and np.isfinite(y).all()


def test_emit_numpy_module_imports_only_numpy_and_matches_run(archc, mlp_path, tmp_path):
    module_path = tmp_path / "mlp_ref.py"
    r = archc("emit-numpy", mlp_path, "-o", module_path)
    assert r.returncode == 0, r.stderr
    source = module_path.read_text()

    tree = pyast.parse(source)
    imported = set()
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, pyast.ImportFrom):
            imported.add(node.module or ".")
    assert imported == {"numpy"}, imported

    spec = importlib.util.spec_from_file_location("mlp_ref", module_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    entry = [n.name for n in tree.body if isinstance(n, pyast.FunctionDef)
             and n.args.args and n.args.args[0].arg == "params"]
    assert len(entry) == 1, entry
    fn = getattr(mod, entry[0])

    inputs = sample_inputs(mlp_path)
    params = load_params(graph_of(mlp_path), None, 0)
    assert set(mod.PARAMS) == set(params)
    got = fn(params, **inputs)

    np.savez(tmp_path / "in.npz", **inputs)
    r = archc("run", mlp_path, "--backend", "numpy", "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
    assert r.returncode == 0, r.stderr
    want = load_npz(tmp_path / "o.npz")
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6, rtol=1e-6)


# ---- --set -----------------------------------------------------------------------------

def test_set_changes_axis_sizes(archc, mlp_path, tmp_path):
    r = archc("ir", mlp_path, "--set", "hidden=32")
    assert r.returncode == 0, r.stderr
    assert "param fc1.weight: f32[dout=32, din=784]" in r.stdout
    assert "param fc2.weight: f32[dout=10, din=32]" in r.stdout
    assert "dout=256" not in r.stdout

    out = tmp_path / "small.onnx"
    assert archc("compile", mlp_path, "--set", "hidden=32", "-o", out).returncode == 0
    shapes = {t.name: list(t.dims) for t in onnx.load(str(out)).graph.initializer}
    assert shapes["fc1.weight"] == [32, 784] and shapes["fc2.weight"] == [10, 32]


def test_set_is_repeatable(archc, mlp_path):
    r = archc("ir", mlp_path, "--set", "hidden=32", "--set", "classes=3")
    assert r.returncode == 0, r.stderr
    assert "f32[batch, classes=3]" in r.stdout and "dout=32" in r.stdout


@pytest.mark.parametrize("setting,message", [
    ("nosuch=3", "mlp.arch declares no axis or constant `nosuch`"),
    ("hidden=abc", "the value must be a number"),
    ("hidden=0", "an axis size must be a positive integer"),
    ("hidden=2.5", "an axis size must be a positive integer"),
])
def test_bad_set_values_are_input_errors(archc, mlp_path, setting, message):
    r = archc("check", mlp_path, "--set", setting)
    assert r.returncode == 1, r.stderr
    # an error without a source location is prefixed with the program's name
    assert r.stderr == f"archc: error: `--set {setting}`: {message}\n"
    assert_no_traceback(r)


# ---- usage errors, help, exit codes -------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_each_command(archc, command):
    r = archc(command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: archc {command}")


def test_top_level_help(archc):
    r = archc("--help")
    assert r.returncode == 0
    for command in COMMANDS:
        assert command in r.stdout


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate", "x.arch"],
    ["check"],
    ["compile", "{mlp}"],                                   # no -o
    ["run", "{mlp}"],                                       # no --output
    ["run", "{mlp}", "--backend", "tpu", "--output", "o.npz"],
    ["compile", "{mlp}", "-o", "x.onnx", "--seed", "abc"],
    ["check", "{mlp}", "--set", "hidden"],                  # not NAME=VALUE
    ["check", "{mlp}", "--no-such-flag"],
])
def test_usage_errors_exit_2(archc, mlp_path, tmp_path, args):
    r = archc(*[a.replace("{mlp}", str(mlp_path)) for a in args])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip(), "a usage error must say what is wrong"
    assert_no_traceback(r)
    assert not any(tmp_path.iterdir()), "a usage error wrote a file"


def test_type_error_exits_1_with_a_located_message(archc, write_arch):
    path = write_arch(TYPE_ERROR, "bad.arch")
    r = archc("check", path.name)
    assert r.returncode == 1
    assert r.stdout == ""
    assert_no_traceback(r)
    first, source, caret = r.stderr.splitlines()[:3]
    assert re.match(r"^bad\.arch:4:10: error: .*no axis `hidden`", first), first
    assert source == " 4 |   return softmax(x over hidden)"
    assert caret.startswith("   |          ^")


@pytest.mark.parametrize("command", ["check", "ir", "compile", "run", "emit-numpy"])
def test_every_command_reports_type_errors_the_same_way(archc, write_arch, command):
    path = write_arch(TYPE_ERROR, "bad.arch")
    extra = {"compile": ["-o", "o.onnx"], "run": ["--output", "o.npz"], "emit-numpy": ["-o", "m.py"]}
    r = archc(command, path.name, *extra.get(command, []))
    assert r.returncode == 1
    assert r.stderr.startswith("bad.arch:4:10: error: ")
    assert_no_traceback(r)


def test_missing_file_is_an_input_error(archc):
    r = archc("check", "nope.arch")
    assert r.returncode == 1
    assert "nope.arch" in r.stderr and "not found" in r.stderr
    assert_no_traceback(r)


# ---- nothing half-written -----------------------------------------------------------------

@pytest.mark.parametrize("command,flag,name", [
    ("compile", "-o", "model.onnx"),
    ("emit-numpy", "-o", "model.py"),
    ("run", "--output", "out.npz"),
])
def test_failed_command_leaves_existing_output_untouched(archc, write_arch, tmp_path, command, flag, name):
    bad = write_arch(TYPE_ERROR, "bad.arch")
    sentinel = tmp_path / name
    sentinel.write_bytes(b"sentinel: must survive a failed build\n")
    r = archc(command, bad, flag, sentinel)
    assert r.returncode == 1
    assert sentinel.read_bytes() == b"sentinel: must survive a failed build\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bad.arch", name]), "temporary files left behind"


def test_successful_compile_replaces_existing_output(archc, mlp_path, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    assert archc("compile", mlp_path, "-o", out).returncode == 0
    onnx.checker.check_model(str(out), full_check=True)


def test_run_rejects_inputs_the_model_does_not_have(archc, mlp_path, tmp_path):
    np.savez(tmp_path / "in.npz", **sample_inputs(mlp_path), extra=np.zeros(3, np.float32))
    r = archc("run", mlp_path, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
    assert r.returncode == 1
    assert "extra" in r.stderr
    assert_no_traceback(r)
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("backend", ["numpy", "onnx"])
@pytest.mark.parametrize("bad,mentions", [
    (np.zeros((3, 5), np.float32), "784"),       # wrong size of `features`
    (np.zeros((3, 784), np.float64), "f32"),     # wrong dtype
], ids=["shape", "dtype"])
def test_run_with_wrong_inputs_is_an_error_not_a_crash(archc, mlp_path, tmp_path, backend, bad, mentions):
    # both backends check the inputs against the model's signature before running it
    # (onnxruntime would otherwise fail with "internal error ...", exit 70)
    np.savez(tmp_path / "in.npz", x=bad)
    r = archc("run", mlp_path, "--backend", backend, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "o.npz")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "`x`" in r.stderr and mentions in r.stderr, r.stderr
    assert_no_traceback(r)
    assert not (tmp_path / "o.npz").exists()


def test_run_with_inputs_that_are_not_an_npz_archive(archc, mlp_path, tmp_path):
    (tmp_path / "junk.npz").write_text("junk\n")
    r = archc("run", mlp_path, "--inputs", tmp_path / "junk.npz", "--output", tmp_path / "o.npz")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr == f"archc: error: cannot read inputs {tmp_path / 'junk.npz'}: not an .npz archive\n"
    assert not (tmp_path / "o.npz").exists()


def test_inprocess_runner_matches_the_subprocess(archc, archc_inprocess, write_arch):
    """tests/test_weights.py runs `cli.main` in-process for speed; it must see what users see."""
    path = write_arch(TYPE_ERROR, "bad.arch")
    for args in (["check", path.name], ["check", path.name, "--set", "nosuch=1"], ["check"]):
        a, b = archc(*args), archc_inprocess(*args)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


# ---- output files ----------------------------------------------------------------------------

OUTPUTS = [("compile", "-o", "model.onnx"), ("emit-numpy", "-o", "model.py"), ("run", "--output", "out.npz")]


@pytest.mark.parametrize("command,flag,name", OUTPUTS)
def test_outputs_get_the_usual_file_permissions(archc, mlp_path, tmp_path, command, flag, name):
    # outputs are written to a temporary file and renamed into place; they must still get
    # 0666 & ~umask (0644 usually), not mkstemp's 0600, so other users can read them
    import os
    umask = os.umask(0)
    os.umask(umask)
    out = tmp_path / name
    assert archc(command, mlp_path, flag, out).returncode == 0
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~umask)


@pytest.mark.parametrize("command,flag,name", OUTPUTS)
def test_an_output_path_that_is_a_directory_is_an_input_error(archc, mlp_path, tmp_path, command, flag, name):
    # an input error (exit 1) naming the path, not "internal error" (exit 70), and no
    # temporary file left next to it
    target = tmp_path / "a_directory"
    target.mkdir()
    r = archc(command, mlp_path, flag, target)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "a_directory" in r.stderr and "internal error" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory"], "temporary files left behind"


# ---- language errors seen through the CLI ------------------------------------------------------

def test_a_constant_may_use_the_size_of_an_axis_declared_above_it(archc, write_arch):
    # constants and axes are declared in source order
    path = write_arch("""
        axis batch, embed = 16
        const scale = 1 / sqrt(|embed|)

        model M(x: f32[batch, embed]) -> f32[batch, embed] {
          return x * scale
        }
    """)
    r = archc("ir", path)
    assert r.returncode == 0, r.stderr
    assert "const(dtype=f32, value=0.25)" in r.stdout, r.stdout


def test_a_constant_may_not_use_an_axis_declared_below_it(archc, write_arch):
    path = write_arch("""
        axis batch
        const scale = 1 / sqrt(|embed|)
        axis embed = 16

        model M(x: f32[batch, embed]) -> f32[batch, embed] {
          return x * scale
        }
    """)
    r = archc("check", path)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{path}:2:24: error: unknown axis `embed`\n"), r.stderr


def test_repeat_count_from_a_block_constant_parameter(archc, write_arch):
    # `repeat n` inside a block counts with the block's own constant parameter `n`
    path = write_arch("""
        axis batch, d = 4

        block Scale(x: f32[batch, d]) -> f32[batch, d] {
          param w: [d] = ones
          return x * w
        }

        block Stack[n = 2](x: f32[batch, d]) -> f32[batch, d] {
          y = repeat n Scale(x) as "layers.{i}"
          return y
        }

        model M(x: f32[batch, d]) -> (a: f32[batch, d], b: f32[batch, d]) {
          return Stack[n=3](x) as deep, Stack(x) as shallow
        }
    """)
    r = archc("ir", path)
    assert r.returncode == 0, r.stderr
    params = re.findall(r"^  param (\S+):", r.stdout, flags=re.M)
    assert params == ["deep.layers.0.w", "deep.layers.1.w", "deep.layers.2.w",
                      "shallow.layers.0.w", "shallow.layers.1.w"], params


def test_an_unread_bf16_input_stays_a_bf16_input(archc, write_arch, tmp_path):
    """A bf16 input, read or not, is a bfloat16 input of the ONNX model; `archc run --backend
    onnx` feeds it from float32 (NumPy has no bfloat16)."""
    path = write_arch("""
        axis batch, d = 3
        model M(x: f32[batch, d], mask: bf16[batch]) -> f32[batch] {
          return sum(x over d)
        }
    """)
    out = tmp_path / "m.onnx"
    r = archc("compile", path, "-o", out)
    assert r.returncode == 0, r.stderr
    assert onnx.load(str(out)).graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    r = archc("run", path, "--backend", "onnx", "--output", tmp_path / "out.npz")
    assert r.returncode == 0, r.stderr
