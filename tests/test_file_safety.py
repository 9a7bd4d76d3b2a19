"""What `archc` may read and write: `use` paths, `--weights` files and `-o` outputs.

The rules (compiler/program.py `resolve_use`, compiler/weights.py, compiler/files.py,
backends/onnx_file.py):

* `use "x.arch"` is relative to the using file and stays inside the folder of the
  compiled file: no absolute paths, no `..` out of it, no symbolic links, only regular
  files. `use "nn"` (no `.arch`) names a standard-library module, nothing else.
* `--weights` takes a .safetensors or .npz file and never unpickles anything; a corrupt
  or hostile file is an input error (exit 1) naming the file, and leaves outputs alone.
* Outputs are written atomically; past protobuf's 2 GB limit the weights go to
  `<model>.onnx.data` beside the model, referenced by that bare name.

Most tests run the real CLI in a fresh interpreter (`run_audited`, the same `cli.main`
that `python -m archlang.compiler.cli` runs) under a `sys.addaudithook` hook that logs
every file the interpreter opens, lists, creates, renames, removes or chmods. That lets a
test check that nothing outside its tmp_path was written, that nothing outside tmp_path,
the Python installation and this repository was read, and that files it names as
forbidden (the targets of refused `use`s) were never opened. The child also reports its
peak memory, which the zip-bomb tests bound. Tests that monkeypatch the ONNX writer's
protobuf limit run `cli.main` in-process (the `archc_inprocess` fixture).
"""
from __future__ import annotations

import importlib.resources
import json
import os
import site
import struct
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parent.parent
STDLIB_DIR = Path(str(importlib.resources.files("archlang.stdlib")))  # where `use "nn"` looks

# ---- running archc under an audit hook ----------------------------------------------------

_BOOT = r"""
import json, os, resource, sys
log = open(sys.argv[1], "w")  # opened before the hook: not logged
cwd = os.getcwd()
events = []

def _arg(a):
    if isinstance(a, (bytes, os.PathLike)):
        return os.fsdecode(a)
    return a if isinstance(a, (str, int, type(None))) else repr(a)

def _hook(event, args):
    if event == "open" or event.startswith(("os.", "shutil.")):
        events.append([event, [_arg(a) for a in args]])

sys.addaudithook(_hook)
limit = os.environ.get("ARCHC_TEST_PROTOBUF_LIMIT")
if limit:
    from archlang.backends import onnx_file
    onnx_file.PROTOBUF_LIMIT = int(limit)
from archlang.compiler.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 2
finally:
    # This process's own peak (VmHWM resets at exec; ru_maxrss would carry over the peak of
    # the pytest process that forked it, gigabytes after the full-size model tests).
    try:
        with open("/proc/self/status") as status:
            peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"cwd": cwd, "events": events, "maxrss_kb": peak}, log)
    log.close()
sys.exit(code)
"""

_WRITE_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.link", "os.chmod", "os.chown",
                 "os.truncate", "os.mkfifo", "os.mknod", "os.utime", "os.chflags", "os.lchmod",
                 "os.lchown", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.rmtree",
                 "shutil.move", "shutil.copytree"}
_READ_EVENTS = {"os.listdir", "os.scandir", "os.chdir"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class Audited:
    returncode: int
    stdout: str
    stderr: str
    reads: list[str] = field(default_factory=list)   # absolute, normalised (links not followed)
    writes: list[str] = field(default_factory=list)
    maxrss_kb: int = 0


def _absolute(cwd: str, p: str) -> str:
    return os.path.normpath(os.path.join(cwd, p))


def _classify(cwd: str, events: list) -> tuple[list[str], list[str]]:
    reads, writes = [], []
    for event, args in events:
        if event == "open":
            path, mode, flags = (args + [None, None, 0])[:3]
            if not isinstance(path, str):
                continue  # an already open descriptor
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                      (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            (writes if writing else reads).append(_absolute(cwd, path))
        elif event == "os.symlink":
            writes.append(_absolute(cwd, args[1]))
        elif event in _WRITE_EVENTS:
            writes += [_absolute(cwd, a) for a in args if isinstance(a, str)]
        elif event in _READ_EVENTS:
            reads += [_absolute(cwd, a) for a in args if isinstance(a, str)]
    return reads, writes


def run_audited(cwd: Path, log_dir: Path, *args: object, env: dict | None = None,
                timeout: float = 120) -> Audited:
    """`archc ARGS...` in a fresh interpreter with the file-access audit hook."""
    log = log_dir / f"audit-{len(list(log_dir.iterdir()))}.json"
    flags = ["-B"] + (["-P"] if sys.version_info >= (3, 11) else [])  # no .pyc writes, no cwd on sys.path
    cmd = [sys.executable, *flags, "-c", _BOOT, str(log), *(str(a) for a in args)]
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    full_env.pop("ARCHC_DEBUG", None)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)
    result = Audited(r.returncode, r.stdout, r.stderr)
    if log.exists() and log.stat().st_size:
        data = json.loads(log.read_text())
        result.reads, result.writes = _classify(data["cwd"], data["events"])
        result.maxrss_kb = data["maxrss_kb"]
    return result


def _real(p: str | Path) -> str:
    return os.path.realpath(p)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _read_roots(tmp_path: Path) -> list[str]:
    roots = {str(tmp_path), str(REPO), sys.prefix, sys.base_prefix, sys.exec_prefix,
             *site.getsitepackages(), "/proc", "/sys", "/dev"}
    return sorted({_real(r) for r in roots} | {os.path.normpath(r) for r in roots})


def assert_confined(r: Audited, tmp_path: Path, forbidden: tuple[Path, ...] = ()) -> None:
    """Writes only under tmp_path (following links); reads only under tmp_path, the
    Python installation and the repository; `forbidden` files never opened or listed."""
    root = _real(tmp_path)
    for w in r.writes:
        # A rename/unlink acts on the link itself, an open on its target: check both ends.
        parent = os.path.join(_real(os.path.dirname(w)), os.path.basename(w))
        assert _within(parent, root), f"wrote outside tmp_path: {w}\n{r.stderr}"
        assert _within(_real(w), root) or not os.path.exists(w), f"wrote through a link out of tmp_path: {w}"
    roots = _read_roots(tmp_path)
    for p in r.reads:
        assert any(_within(p, x) or _within(_real(p), x) for x in roots), \
            f"read outside tmp_path and the installation: {p}\n{r.stderr}"
    banned = {os.path.normpath(str(f)) for f in forbidden} | {_real(f) for f in forbidden}
    for p in r.reads + r.writes:
        assert os.path.normpath(p) not in banned and _real(p) not in banned, \
            f"touched a file it must not: {p}\n{r.stderr}"


def assert_input_error(r, *needles: str) -> None:
    """Exit 1, an `error:` line mentioning each needle, and no traceback."""
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert "internal error" not in r.stderr, r.stderr
    assert "error:" in r.stderr, r.stderr
    for needle in needles:
        assert needle in r.stderr, f"{needle!r} not in:\n{r.stderr}"


@pytest.fixture
def audited(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """`audited(*args, cwd=...)`: run_audited with the test's tmp_path as working directory."""
    log_dir = tmp_path_factory.mktemp("audit")

    def run(*args: object, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> Audited:
        return run_audited(cwd or tmp_path, log_dir, *args, env=env, timeout=timeout)
    return run


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_the_audit_hook_sees_reads_and_writes(audited, tmp_path):
    """The harness itself: an ordinary compile is logged, and a forbidden file is caught."""
    model = write(tmp_path / "proj" / "m.arch", MODEL_USING.format(path="nn"))
    r = audited("compile", model, "-o", tmp_path / "out" / "m.onnx")
    assert r.returncode == 0, r.stderr
    assert str(model) in r.reads
    assert any(w.startswith(str(tmp_path / "out")) for w in r.writes)
    assert_confined(r, tmp_path)
    with pytest.raises(AssertionError, match="touched a file it must not"):
        assert_confined(r, tmp_path, forbidden=(model,))
    assert r.maxrss_kb > 0


# ---- 1. `use` paths ---------------------------------------------------------------------

MODEL_USING = """\
use "{path}"
axis batch
axis d = 3

model M(x: f32[batch, d]) -> f32[batch, d] {{
  return x
}}
"""

SECRET = "SECRET-MARKER-7f3a"
# A file that must never be read: its text would show up in a syntax error if it were.
OUTSIDE_TEXT = f"{SECRET} this is not arch\n"


@pytest.fixture
def project(tmp_path: Path):
    """tmp_path/proj is the compiled file's folder; tmp_path/outside.arch exists above it."""
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "lib").mkdir()
    outside = write(tmp_path / "outside.arch", OUTSIDE_TEXT)
    return proj, outside


def compile_using(audited, proj: Path, path: str, name: str = "m.arch") -> Audited:
    model = write(proj / name, MODEL_USING.format(path=path))
    return audited("check", model)


def assert_refused(r: Audited, tmp_path: Path, *needles: str, forbidden: tuple[Path, ...] = ()) -> None:
    assert SECRET not in r.stderr and SECRET not in r.stdout, f"read a file it must not:\n{r.stderr}"
    assert_confined(r, tmp_path, forbidden)
    assert_input_error(r, *needles)


def test_use_without_arch_suffix_is_only_a_stdlib_name(audited, project, tmp_path):
    proj, outside = project
    r = compile_using(audited, proj, "../../etc/passwd")
    assert_refused(r, tmp_path, "no standard library module", forbidden=(Path("/etc/passwd"), outside))


@pytest.mark.parametrize("path", ["../../../etc/hosts.arch", "../outside.arch", "sub/../../outside.arch",
                                  "lib/../../outside.arch", "./../outside.arch", "sub/../../proj/../outside.arch"])
def test_use_may_not_climb_out_of_the_compiled_files_folder(audited, project, tmp_path, path):
    """`sub/../../outside.arch` is refused even though tmp_path/outside.arch exists."""
    proj, outside = project
    r = compile_using(audited, proj, path)
    assert_refused(r, tmp_path, "reaches outside", forbidden=(outside, Path("/etc/hosts.arch")))


def test_use_may_go_down_and_back_up_inside_the_folder(audited, project, tmp_path):
    proj, outside = project
    write(proj / "inside.arch", "block Id[d](x: f32[..., d]) -> f32[..., d] { return x }\n")
    r = compile_using(audited, proj, "sub/../inside.arch")
    assert r.returncode == 0, r.stderr
    assert_confined(r, tmp_path, forbidden=(outside,))


@pytest.mark.parametrize("path", ["/etc/passwd.arch", "~/x.arch", "ABSOLUTE"])
def test_use_of_an_absolute_path_is_refused(audited, project, tmp_path, path):
    proj, outside = project
    path = str(outside) if path == "ABSOLUTE" else path  # an absolute path that exists
    r = compile_using(audited, proj, path)
    assert_refused(r, tmp_path, "relative to the using file", forbidden=(outside, Path("/etc/passwd.arch")))


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_stdlib_name_cannot_reach_files_outside_the_stdlib(audited, project, tmp_path, how):
    """`use "NAME"` looks up `NAME.arch` in the standard library; a NAME with `..` or a
    leading `/` must not turn that into a read of any `.arch` file on disk."""
    proj, _ = project
    secret = write(tmp_path / "elsewhere" / "secret.arch", OUTSIDE_TEXT)
    stem = str(secret)[:-len(".arch")]
    name = os.path.relpath(stem, STDLIB_DIR) if how == "relative" else stem
    r = compile_using(audited, proj, name)
    assert_refused(r, tmp_path, "no standard library module", forbidden=(secret,))


def _symlink_cases(proj: Path, outside: Path) -> dict[str, str]:
    write(proj / "inside.arch", "block Id[d](x: f32[..., d]) -> f32[..., d] { return x }\n")
    write(proj / "sub" / "h.arch", "block H[d](x: f32[..., d]) -> f32[..., d] { return x }\n")
    (proj / "to_outside.arch").symlink_to(outside)
    (proj / "to_outside_rel.arch").symlink_to(Path("..") / outside.name)
    (proj / "to_inside.arch").symlink_to("inside.arch")
    (proj / "dangling.arch").symlink_to("nowhere.arch")
    (proj / "sublink").symlink_to("sub", target_is_directory=True)
    (proj / "uplink").symlink_to("..", target_is_directory=True)
    return {"to_outside.arch": "to_outside.arch", "to_outside_rel.arch": "to_outside_rel.arch",
            "to_inside.arch": "to_inside.arch", "dangling.arch": "dangling.arch",
            "sublink": "sublink/h.arch", "uplink": f"uplink/{outside.name}"}


@pytest.mark.parametrize("case", ["to_outside.arch", "to_outside_rel.arch", "to_inside.arch", "dangling.arch",
                                  "sublink", "uplink"])
def test_use_never_follows_a_symbolic_link(audited, project, tmp_path, case):
    """Links are refused whether they lead out of the folder or stay inside it."""
    proj, outside = project
    path = _symlink_cases(proj, outside)[case]
    r = compile_using(audited, proj, path)
    assert_refused(r, tmp_path, "symbolic link", forbidden=(outside,))


def test_use_of_a_directory_is_refused(audited, project, tmp_path):
    proj, _ = project
    (proj / "x.arch").mkdir()
    r = compile_using(audited, proj, "x.arch")
    assert_refused(r, tmp_path, "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_use_of_a_fifo_is_refused_without_hanging(audited, project, tmp_path):
    proj, _ = project
    os.mkfifo(proj / "x.arch")
    try:
        r = compile_using_with_timeout(audited, proj, "x.arch")
    except subprocess.TimeoutExpired:
        pytest.fail("archc blocked opening a FIFO named by `use`")
    assert_refused(r, tmp_path, "not a regular file")
    assert str(proj / "x.arch") not in r.reads


def compile_using_with_timeout(audited, proj: Path, path: str) -> Audited:
    model = write(proj / "m.arch", MODEL_USING.format(path=path))
    return audited("check", model, timeout=30)


NESTED_MODEL = """\
use "lib/blocks.arch"
axis batch
axis d = 3

model M(x: f32[batch, d]) -> f32[batch, d] {
  return Quad[d](x)
}
"""
COMMON = "block Twice[d](x: f32[..., d]) -> f32[..., d] { return x + x }\n"
BLOCKS = 'use "../common.arch"\nblock Quad[d](x: f32[..., d]) -> f32[..., d] { return Twice[d](Twice[d](x)) }\n'


def _nested_project(root: Path) -> Path:
    write(root / "common.arch", COMMON)
    write(root / "lib" / "blocks.arch", BLOCKS)
    return write(root / "m.arch", NESTED_MODEL)


def test_nested_use_inside_the_folder_is_allowed(audited, tmp_path):
    """lib/blocks.arch uses ../common.arch: relative to itself, still inside the root."""
    model = _nested_project(tmp_path / "proj")
    out = tmp_path / "proj" / "m.onnx"
    r = audited("compile", model, "-o", out)
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / "proj" / "common.arch") in r.reads
    assert str(tmp_path / "proj" / "lib" / "blocks.arch") in r.reads
    assert_confined(r, tmp_path)
    onnx.checker.check_model(str(out), full_check=True)


@pytest.mark.parametrize("path, message", [("../../outside.arch", "reaches outside"),
                                           ("../sub/../../outside.arch", "reaches outside"),
                                           ("../to_outside.arch", "symbolic link")])
def test_a_used_file_may_not_escape_from_a_subfolder(audited, project, tmp_path, path, message):
    """The root stays the compiled file's folder, not the folder of the file that uses."""
    proj, outside = project
    (proj / "to_outside.arch").symlink_to(outside)
    write(proj / "lib" / "blocks.arch", f'use "{path}"\n')
    r = compile_using(audited, proj, "lib/blocks.arch")
    assert_refused(r, tmp_path, message, "blocks.arch:1:", forbidden=(outside,))


def test_compiled_file_named_through_a_symlink_works(audited, tmp_path):
    """The user named the link: archc reads it (uses of the stdlib only)."""
    real = write(tmp_path / "real" / "m.arch", MODEL_USING.format(path="nn"))
    link = tmp_path / "link.arch"
    link.symlink_to(real)
    r = audited("check", link)
    assert r.returncode == 0, r.stderr
    assert_confined(r, tmp_path)


def test_compiled_file_in_a_symlinked_folder_keeps_its_nested_uses(audited, tmp_path):
    _nested_project(tmp_path / "real")
    (tmp_path / "linkdir").symlink_to("real", target_is_directory=True)
    r = audited("check", tmp_path / "linkdir" / "m.arch")
    assert r.returncode == 0, r.stderr
    assert_confined(r, tmp_path)


def test_compiled_file_named_through_a_symlink_keeps_its_nested_uses(audited, tmp_path):
    """`ln -s real/m.arch m.arch; archc check m.arch`: m.arch's `use "lib/blocks.arch"` is
    relative to the file that says it (real/), so it still resolves to real/lib/blocks.arch."""
    _nested_project(tmp_path / "real")
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "m.arch"
    link.symlink_to(tmp_path / "real" / "m.arch")
    r = audited("check", link)
    assert r.returncode == 0, r.stderr
    assert_confined(r, tmp_path)


# ---- 2. weights files -------------------------------------------------------------------

TINY = """\
use "nn"
axis batch
axis din = 3, dout = 2

model Tiny(x: f32[batch, din]) -> f32[batch, dout] {
  return Linear[din, dout](x) as fc
}
"""

GOOD = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.ones(2, np.float32)}


def _safetensors(header: object, data: bytes = b"", raw: bytes | None = None) -> bytes:
    text = json.dumps(header).encode() if raw is None else raw
    return struct.pack("<Q", len(text)) + text + data


def _good_safetensors() -> bytes:
    from safetensors.numpy import save
    return save(GOOD)


def _entry(dtype: str, shape: list[int], start: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


def _npz(members: dict[str, bytes]) -> bytes:
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header_only(shape: tuple, descr: str = "<f4", data: bytes = b"") -> bytes:
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _bad_weights() -> dict[str, tuple[str, bytes | None, tuple[str, ...]]]:
    """name -> (file name, bytes (None: no file), extra message needles)."""
    good = _good_safetensors()
    (n,) = struct.unpack("<Q", good[:8])
    both = lambda w, b: {"fc.weight": w, "fc.bias": b}  # noqa: E731
    pickled = np.array([{"a": 1}, None, 1, 2, 3, 4], dtype=object).reshape(2, 3)
    return {
        "st-empty": ("w.safetensors", b"", ()),
        "st-cut-in-length": ("w.safetensors", good[:4], ()),
        "st-cut-in-header": ("w.safetensors", good[:8 + n // 2], ()),
        "st-cut-in-data": ("w.safetensors", good[:-5], ()),
        "st-cut-after-header": ("w.safetensors", good[:8 + n], ()),
        "st-length-2**62": ("w.safetensors", struct.pack("<Q", 2 ** 62) + good[8:], ()),
        "st-length-2**64-1": ("w.safetensors", struct.pack("<Q", 2 ** 64 - 1) + good[8:], ()),
        "st-length-past-end": ("w.safetensors", struct.pack("<Q", len(good)) + good[8:], ()),
        "st-header-not-json": ("w.safetensors", _safetensors(None, b"\0" * 32, raw=b"not json, not at all"), ()),
        "st-header-json-list": ("w.safetensors", _safetensors([1, 2, 3], b"\0" * 32), ()),
        "st-header-not-utf8": ("w.safetensors", _safetensors(None, b"\0" * 32, raw=b'{"\xff\xfe": 1}'), ()),
        "st-offsets-past-end": ("w.safetensors", _safetensors(
            both(_entry("F32", [2, 3], 0, 24), _entry("F32", [2], 24, 1 << 40)), b"\0" * 32), ()),
        "st-offsets-overlap": ("w.safetensors", _safetensors(
            both(_entry("F32", [2, 3], 0, 24), _entry("F32", [2], 16, 24)), b"\0" * 24), ()),
        "st-offsets-reversed": ("w.safetensors", _safetensors(
            both(_entry("F32", [2, 3], 24, 0), _entry("F32", [2], 24, 32)), b"\0" * 32), ()),
        "st-offsets-negative": ("w.safetensors", _safetensors(
            both(_entry("F32", [2, 3], -24, 0), _entry("F32", [2], 0, 8)), b"\0" * 32), ()),
        "st-shape-disagrees-with-offsets": ("w.safetensors", _safetensors(
            both(_entry("F32", [2, 30], 0, 24), _entry("F32", [2], 24, 32)), b"\0" * 32), ()),
        "st-shape-overflows": ("w.safetensors", _safetensors(
            both(_entry("F32", [2 ** 40, 2 ** 40], 0, 24), _entry("F32", [2], 24, 32)), b"\0" * 32), ()),
        "st-unknown-dtype": ("w.safetensors", _safetensors(
            both(_entry("F99", [2, 3], 0, 24), _entry("F32", [2], 24, 32)), b"\0" * 32), ()),
        "st-dtype-numpy-lacks": ("w.safetensors", _safetensors(
            both(_entry("F8_E4M3", [2, 3], 0, 6), _entry("F32", [2], 8, 16)), b"\0" * 16), ()),
        "npz-object-array": ("w.npz", _npz({"fc.weight.npy": _npy(pickled), "fc.bias.npy": _npy(GOOD["fc.bias"])}),
                             ("holds Python objects", "never unpickles")),
        "npz-truncated": ("w.npz", _npz({"fc.weight.npy": _npy(GOOD["fc.weight"]),
                                         "fc.bias.npy": _npy(GOOD["fc.bias"])})[:60], ()),
        "npz-not-a-zip": ("w.npz", b"hello, I am not a zip archive", ()),
        "npz-member-truncated": ("w.npz", _npz({"fc.weight.npy": _npy(GOOD["fc.weight"])[:-4],
                                                "fc.bias.npy": _npy(GOOD["fc.bias"])}), ()),
        "npz-member-bad-header": ("w.npz", _npz({"fc.weight.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 12}    \n",
                                                 "fc.bias.npy": _npy(GOOD["fc.bias"])}), ()),
        "npz-declares-4-PiB": ("w.npz", _npz({"fc.weight.npy": _npy_header_only((2 ** 50,), data=b"\0" * 24),
                                              "fc.bias.npy": _npy(GOOD["fc.bias"])}), ()),
        "wrong-suffix-pt": ("w.pt", b"PK\x03\x04 torch pickle", ("expected a .safetensors or .npz",)),
        "wrong-suffix-bin": ("w.bin", b"\0" * 64, ("expected a .safetensors or .npz",)),
        "no-suffix": ("weights", b"\0" * 64, ("expected a .safetensors or .npz",)),
        "missing-safetensors": ("missing.safetensors", None, ("not found",)),
        "missing-npz": ("missing.npz", None, ("not found",)),
        "missing-pt": ("missing.pt", None, ()),
    }


BAD_WEIGHTS = _bad_weights()


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_a_bad_weights_file_is_an_input_error_that_touches_no_output(audited, tmp_path, case):
    """Through the real CLI: exit 1 naming the file, no traceback, nothing read or written
    outside tmp_path, and the previous model and data file left byte-identical."""
    model = write(tmp_path / "m.arch", TINY)
    weights = _write_bad_weights(tmp_path, case)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "m.onnx").write_bytes(b"previous model")
    (out_dir / "m.onnx.data").write_bytes(b"previous data")
    before = _listing(out_dir)
    r = audited("compile", model, "-o", out_dir / "m.onnx", "--weights", weights)
    assert_input_error(r, weights.name, *BAD_WEIGHTS[case][2])
    assert_confined(r, tmp_path)
    assert _listing(out_dir) == before  # nothing changed, no temporary left


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_a_bad_weights_file_creates_no_output(archc_inprocess, tmp_path, case):
    """The same files with an output that does not exist yet: neither it nor its folder
    appears. (In-process, for speed; the subprocess test above covers the command line.)"""
    model = write(tmp_path / "m.arch", TINY)
    weights = _write_bad_weights(tmp_path, case)
    r = archc_inprocess("compile", model, "-o", tmp_path / "fresh" / "m.onnx", "--weights", weights)
    assert_input_error(r, weights.name, *BAD_WEIGHTS[case][2])
    assert not (tmp_path / "fresh").exists()


def _write_bad_weights(tmp_path: Path, case: str) -> Path:
    name, data, _ = BAD_WEIGHTS[case]
    weights = tmp_path / "w" / name
    weights.parent.mkdir()
    if data is not None:
        weights.write_bytes(data)
    return weights


def test_an_npz_object_array_is_never_unpickled(audited, tmp_path):
    """The pickle would run `os.system`-style code on load; it must not get the chance."""
    model = write(tmp_path / "m.arch", TINY)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    arr = np.empty((2, 3), dtype=object)
    arr[...] = Evil()
    weights = tmp_path / "w.npz"
    weights.write_bytes(_npz({"fc.weight.npy": _npy(arr), "fc.bias.npy": _npy(GOOD["fc.bias"])}))
    r = audited("compile", model, "-o", tmp_path / "m.onnx", "--weights", weights)
    assert_input_error(r, "w.npz")
    assert not marker.exists()
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("kind", ["directory.safetensors", "directory.npz", "directory"])
def test_a_weights_path_that_is_a_directory(audited, tmp_path, kind):
    model = write(tmp_path / "m.arch", TINY)
    (tmp_path / kind).mkdir()
    r = audited("compile", model, "-o", tmp_path / "m.onnx", "--weights", tmp_path / kind)
    assert_input_error(r, kind)
    assert not (tmp_path / "m.onnx").exists()
    assert_confined(r, tmp_path)


@pytest.mark.parametrize("content", ["text", "npy"])
def test_an_npz_that_is_not_a_zip_archive_says_so(audited, tmp_path, content):
    """np.load falls back to pickle (refused) for unknown bytes and returns a bare array for
    a .npy; either way the user should read that the file is not an .npz archive, as
    `archc run --inputs` already says, not numpy's internals."""
    model = write(tmp_path / "m.arch", TINY)
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"hello, I am not a zip archive" if content == "text" else _npy(GOOD["fc.weight"]))
    r = audited("compile", model, "-o", tmp_path / "m.onnx", "--weights", weights)
    assert_input_error(r, "w.npz", "not an .npz archive")
    assert "pickle" not in r.stderr and "context manager" not in r.stderr, r.stderr


BOMB_BYTES = 1 << 30  # 1 GiB of zeros; about 1 MB on disk


def _zip_bomb(path: Path, member: str, shape: tuple[int, ...] | None = None) -> Path:
    """An .npz with the right fc.weight/fc.bias (unless `member` replaces one) plus
    `member`: 1 GiB of float32 zeros, deflated."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, arr in GOOD.items():
            if f"{name}.npy" != member:
                z.writestr(f"{name}.npy", _npy(arr))
        with z.open(member, "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": shape or (BOMB_BYTES // 4,)})
            chunk = bytes(1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                f.write(chunk)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("member", ["extra.npy", "fc.weight.npy"])
def test_an_npz_zip_bomb_is_refused_before_it_is_inflated(audited, tmp_path, member):
    """A 1 MB .npz whose member inflates to 1 GiB: either a tensor the model does not have
    (`extra`) or a mis-shaped one (`fc.weight`, expected [2, 3]). Both are refused by name
    and shape, which the .npy header gives without reading the data, so archc's peak
    memory stays far below 1 GiB."""
    model = write(tmp_path / "m.arch", TINY)
    weights = _zip_bomb(tmp_path / "bomb.npz", member)
    assert weights.stat().st_size < 16 << 20
    r = audited("compile", model, "-o", tmp_path / "m.onnx", "--weights", weights)
    assert_input_error(r, "bomb.npz")
    assert not (tmp_path / "m.onnx").exists()
    assert r.maxrss_kb * 1024 < BOMB_BYTES // 2, f"peak memory {r.maxrss_kb // 1024} MiB reading a 1 MB file"


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_good_weights_still_bind(audited, tmp_path, suffix):
    """The refusals above are not refusing everything."""
    model = write(tmp_path / "m.arch", TINY)
    weights = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        np.savez(weights, **GOOD)
    else:
        save_file(GOOD, str(weights))
    out = tmp_path / "m.onnx"
    r = audited("compile", model, "-o", out, "--weights", weights)
    assert r.returncode == 0, r.stderr
    assert_confined(r, tmp_path)
    loaded = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(loaded["fc.weight"], GOOD["fc.weight"])  # [dout, din] as stored
    np.testing.assert_array_equal(loaded["fc.bias"], GOOD["fc.bias"])


# ---- 3. outputs -------------------------------------------------------------------------

def assert_safe_locations(model_path: Path) -> None:
    """No initializer's external data points anywhere but a bare file name beside the model."""
    model = onnx.load(str(model_path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                assert not os.path.isabs(e.value), e.value
                assert ".." not in Path(e.value).parts and ".." not in e.value.replace("\\", "/").split("/"), e.value
                assert "/" not in e.value and "\\" not in e.value, e.value
                assert e.value == model_path.name + ".data", e.value


def test_compile_into_a_folder_that_does_not_exist_creates_it(audited, mlp_path, tmp_path):
    out = tmp_path / "new" / "deeper" / "mlp.onnx"
    r = audited("compile", mlp_path, "-o", out)
    assert r.returncode == 0, r.stderr
    assert_confined(r, tmp_path)
    onnx.checker.check_model(str(out), full_check=True)
    assert_safe_locations(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["mlp.onnx"]


def test_compile_below_a_regular_file_is_an_input_error(audited, mlp_path, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_bytes(b"keep me")
    r = audited("compile", mlp_path, "-o", blocker / "mlp.onnx")
    assert_input_error(r, "afile")
    assert blocker.read_bytes() == b"keep me"
    assert_confined(r, tmp_path)


def test_compile_onto_an_existing_directory_is_an_input_error(audited, mlp_path, tmp_path):
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "keep").write_bytes(b"x")
    r = audited("compile", mlp_path, "-o", tmp_path / "outdir")
    assert_input_error(r, "outdir", "directory")
    assert _listing(tmp_path / "outdir") == {"keep": b"x"}


def test_an_output_with_a_trailing_slash_is_not_written_as_a_file(audited, mlp_path, tmp_path):
    """`-o newdir/` names a folder; archc must not quietly write a file called `newdir`."""
    r = audited("compile", mlp_path, "-o", "newdir/")
    assert not (tmp_path / "newdir").is_file(), "wrote the model to a file named `newdir`"
    assert_input_error(r, "newdir")


def test_an_output_that_is_a_symlink_does_not_write_through_it(audited, mlp_path, tmp_path):
    """Replacing `-o`'s link leaves the file it pointed at alone."""
    (tmp_path / "elsewhere").mkdir()
    target = tmp_path / "elsewhere" / "precious.onnx"
    target.write_bytes(b"precious")
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "mlp.onnx"
    link.symlink_to(target)
    r = audited("compile", mlp_path, "-o", link)
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == b"precious"
    onnx.checker.check_model(str(link), full_check=True)


@pytest.fixture
def external(monkeypatch):
    """Force the >2 GB path: every tensor of any model goes to the external data file."""
    monkeypatch.setattr("archlang.backends.onnx_file.PROTOBUF_LIMIT", 1024)


def _external_locations(path: Path) -> list[tuple[str, int, int]]:
    model = onnx.load(str(path), load_external_data=False)
    out = []
    for t in model.graph.initializer:
        assert t.data_location == onnx.TensorProto.EXTERNAL, t.name
        info = {e.key: e.value for e in t.external_data}
        out.append((info["location"], int(info["offset"]), int(info["length"])))
    return out


def test_external_data_sits_beside_the_model_under_a_fixed_name(archc_inprocess, external, mlp_path, tmp_path):
    (tmp_path / "sub").mkdir()
    r = archc_inprocess("compile", mlp_path, "-o", "sub/mlp.onnx")  # relative, from tmp_path
    assert r.returncode == 0, r.stderr
    model_path, data_path = tmp_path / "sub" / "mlp.onnx", tmp_path / "sub" / "mlp.onnx.data"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["mlp.onnx", "mlp.onnx.data"]
    assert_safe_locations(model_path)
    spans = sorted((off, length) for _, off, length in _external_locations(model_path))
    size = data_path.stat().st_size
    end = 0
    for off, length in spans:
        assert off % 4096 == 0, off
        assert off >= end, "external tensors overlap"
        assert off + length <= size
        end = off + length
    # onnx's own checks: loading resolves and validates each location against the folder.
    loaded = onnx.load(str(model_path))
    onnx.checker.check_model(str(model_path), full_check=True)
    # The same values as an embedded compile.
    embedded = tmp_path / "embedded.onnx"
    from archlang.backends import onnx_file
    onnx_file.PROTOBUF_LIMIT = 2 ** 40  # monkeypatch restores the original afterwards
    assert archc_inprocess("compile", mlp_path, "-o", embedded).returncode == 0
    want = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(embedded)).graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_external_data_with_a_path_from_another_folder(archc_inprocess, external, mlp_path, tmp_path):
    """The location is the bare name even when -o is absolute or climbs with `..`."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    r = archc_inprocess("compile", mlp_path, "-o", "../../out/m.onnx", cwd=tmp_path / "a" / "b")
    assert r.returncode == 0, r.stderr
    assert_safe_locations(tmp_path / "out" / "m.onnx")
    assert (tmp_path / "out" / "m.onnx.data").is_file()
    onnx.checker.check_model(str(tmp_path / "out" / "m.onnx"), full_check=True)
    r = archc_inprocess("compile", mlp_path, "-o", tmp_path / "out" / "abs.onnx", cwd=tmp_path / "a")
    assert r.returncode == 0, r.stderr
    assert_safe_locations(tmp_path / "out" / "abs.onnx")
    onnx.load(str(tmp_path / "out" / "abs.onnx"))


def test_external_data_does_not_write_through_a_planted_link(archc_inprocess, external, mlp_path, tmp_path):
    """A link already sitting at `<model>.onnx.data` is replaced, not written through."""
    (tmp_path / "elsewhere").mkdir()
    target = tmp_path / "elsewhere" / "precious"
    target.write_bytes(b"precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mlp.onnx.data").symlink_to(target)
    r = archc_inprocess("compile", mlp_path, "-o", tmp_path / "out" / "mlp.onnx")
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == b"precious"
    assert not (tmp_path / "out" / "mlp.onnx.data").is_symlink()
    onnx.checker.check_model(str(tmp_path / "out" / "mlp.onnx"), full_check=True)


def test_a_failed_external_compile_leaves_both_previous_files(archc_inprocess, external, write_arch, tmp_path):
    model = write_arch(TINY)
    (tmp_path / "m.onnx").write_bytes(b"old model")
    (tmp_path / "m.onnx.data").write_bytes(b"old data")
    r = archc_inprocess("compile", model, "-o", tmp_path / "m.onnx", "--weights", tmp_path / "missing.npz")
    assert_input_error(r, "missing.npz")
    assert (tmp_path / "m.onnx").read_bytes() == b"old model"
    assert (tmp_path / "m.onnx.data").read_bytes() == b"old data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data", "model.arch"]


# ---- 4. determinism ---------------------------------------------------------------------

def test_compiling_twice_in_separate_processes_gives_identical_bytes(audited, mlp_path, tmp_path):
    outs = []
    for i, seed in enumerate(["0", "12345"]):
        out = tmp_path / f"run{i}" / "mlp.onnx"
        r = audited("compile", mlp_path, "-o", out, env={"PYTHONHASHSEED": seed})
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_external_data_compiles_to_identical_bytes(archc_inprocess, external, mlp_path, tmp_path):
    """Both files, into two folders and again over the first."""
    def compile_into(folder: Path) -> tuple[bytes, bytes]:
        folder.mkdir(exist_ok=True)
        r = archc_inprocess("compile", mlp_path, "-o", folder / "mlp.onnx")
        assert r.returncode == 0, r.stderr
        return (folder / "mlp.onnx").read_bytes(), (folder / "mlp.onnx.data").read_bytes()

    first = compile_into(tmp_path / "a")
    assert compile_into(tmp_path / "b") == first
    assert compile_into(tmp_path / "a") == first


def test_external_data_is_identical_across_processes(audited, mlp_path, tmp_path):
    files = []
    for i, seed in enumerate(["1", "999"]):
        folder = tmp_path / f"p{i}"
        r = audited("compile", mlp_path, "-o", folder / "mlp.onnx",
                    env={"PYTHONHASHSEED": seed, "ARCHC_TEST_PROTOBUF_LIMIT": "1024"})
        assert r.returncode == 0, r.stderr
        assert_confined(r, tmp_path)
        files.append(((folder / "mlp.onnx").read_bytes(), (folder / "mlp.onnx.data").read_bytes()))
    assert files[0] == files[1]
    assert_safe_locations(tmp_path / "p0" / "mlp.onnx")


def test_compiling_with_weights_twice_gives_identical_bytes(audited, tmp_path):
    model = write(tmp_path / "m.arch", TINY)
    weights = tmp_path / "w.safetensors"
    save_file(GOOD, str(weights))
    outs = []
    for i in range(2):
        r = audited("compile", model, "-o", tmp_path / f"m{i}.onnx", "--weights", weights)
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / f"m{i}.onnx").read_bytes())
    assert outs[0] == outs[1]
