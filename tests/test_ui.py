"""Diagnostic goldens: the bad-input corpus under tests/ui/ (rustc UI-test style).

Each `tests/ui/<area>/<what-it-checks>.arch` is a program `archc check` must reject. Its
stderr, with the case's directory written `$DIR` and the standard library's `$STDLIB`,
must equal the `.stderr` file beside it; `pytest --bless` rewrites those goldens, and a
reviewer reads the diff.

Annotations say where each error must point:

    y = x @ w      # ~ERROR no shared axis      an error on this line containing the text
    # ~^ ERROR unexpected                        one `^` per line above the comment
    # ~? ERROR names no axis                     an error with no source location
    x = 3          # ~WARNING never used         a warning (a case with only warnings must pass `check`)

Every error must be annotated and every annotation matched. A first line
`# ARGS: --set foo=1` adds arguments to the `archc check` command line. Files under an
`auxiliary/` folder are helpers (used by a case), not cases; their annotations count
whenever an error points into them.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parent / "ui"
STDLIB = Path(str(resources.files("archlang.stdlib"))).resolve()  # where `use "nn"` reads from

ANNOTATION = re.compile(r"#\s*~(?P<up>\^*)\s*(?P<nospan>\?)?\s*(?P<kind>ERROR|WARNING)\s+(?P<text>.*?)\s*$")
LOCATED = re.compile(r"^(?P<file>\S.*?):(?P<line>\d+):(?P<col>\d+): (?P<kind>error|warning): (?P<msg>.*)$")
UNLOCATED = re.compile(r"^archc: error: (?P<msg>.*)$")  # an error without a source location


def _cases() -> list[Path]:
    return sorted(p for p in UI.rglob("*.arch") if "auxiliary" not in p.relative_to(UI).parts)


@dataclass(frozen=True)
class Annotation:
    file: Path
    line: int  # 0 for an error without a location
    text: str
    kind: str = "error"  # or "warning"


@dataclass(frozen=True)
class Reported:
    file: Path | None
    line: int
    message: str
    kind: str = "error"


def annotations(path: Path) -> list[Annotation]:
    out = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        m = ANNOTATION.search(text)
        if m:
            line = 0 if m["nospan"] else number - len(m["up"])
            out.append(Annotation(path.resolve(), line, m["text"], m["kind"].lower()))
    return out


def extra_args(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    m = re.match(r"#\s*ARGS:(.*)$", first)
    return shlex.split(m[1]) if m else []


def normalize(stderr: str, case_dir: Path) -> str:
    """Machine-specific paths become `$DIR` and `$STDLIB`; line endings become `\\n`."""
    for real, placeholder in ((case_dir.resolve(), "$DIR"), (case_dir, "$DIR"), (STDLIB, "$STDLIB")):
        stderr = stderr.replace(str(real), placeholder)
    return stderr.replace("\r\n", "\n")


def reported(stderr: str, case_dir: Path) -> list[Reported]:
    """The errors in (normalized) stderr, each with the file and line it points at."""
    out = []
    for text in stderr.splitlines():
        m = LOCATED.match(text)
        if m:
            file = Path(m["file"].replace("$DIR", str(case_dir)).replace("$STDLIB", str(STDLIB)))
            if not file.is_absolute():
                file = case_dir / file
            out.append(Reported(file.resolve(), int(m["line"]), m["msg"], m["kind"]))
            continue
        m = UNLOCATED.match(text)
        if m:
            out.append(Reported(None, 0, m["msg"]))
    return out


def check_annotations(case: Path, errors: list[Reported]) -> list[str]:
    """Problems: errors nobody annotated, annotations no error matched."""
    files = {case.resolve()} | {e.file for e in errors if e.file is not None and e.file.suffix == ".arch"}
    wanted: list[Annotation] = []
    for f in sorted(files):
        if f.is_file() and (f == case.resolve() or UI in f.parents):
            wanted += annotations(f)
    problems = []
    matched: set[Annotation] = set()
    for e in errors:
        hits = [a for a in wanted if a.line == e.line and (a.line == 0 or a.file == e.file) and a.text in e.message
                and a.kind == e.kind]
        if not hits:
            where = f"{e.file.name}:{e.line}" if e.file else "(no location)"
            problems.append(f"unannotated {e.kind} at {where}: {e.message}")
        matched.update(hits)
    for a in wanted:
        if a not in matched:
            where = f"{a.file.name}:{a.line}" if a.line else "(no location)"
            problems.append(f"{a.kind} annotation `{a.text}` at {where} matched no {a.kind}")
    return problems


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.relative_to(UI).with_suffix("").as_posix())
def test_ui(case: Path, bless: bool, archc) -> None:
    result = archc("check", case, *extra_args(case), cwd=case.parent)
    stderr = normalize(result.stderr, case.parent)
    golden = case.with_suffix(".stderr")

    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    expects_error = any(a.kind == "error" for a in annotations(case)) or any(
        r.kind == "error" for r in reported(stderr, case.parent))  # unwanted errors fail the annotation check
    want_code = 1 if expects_error else 0  # warnings never change the exit code
    assert result.returncode == want_code, f"exit code {result.returncode}, expected {want_code}\n{stderr}"
    if expects_error:
        assert result.stdout == "", f"a failed check printed to stdout: {result.stdout!r}"

    problems = check_annotations(case, reported(stderr, case.parent))
    assert not problems, "\n".join(problems) + "\n--- stderr ---\n" + stderr

    if bless:
        golden.write_text(stderr, encoding="utf-8")
        return
    assert golden.exists(), f"no golden {golden.name}; run `pytest tests/test_ui.py --bless` and review it"
    expected = golden.read_text(encoding="utf-8")
    assert stderr == expected, (f"stderr differs from {golden.relative_to(UI)} "
                                f"(rerun with --bless if the change is intended)\n--- got ---\n{stderr}"
                                f"--- expected ---\n{expected}")


def test_every_golden_has_a_case() -> None:
    orphans = [g.relative_to(UI).as_posix() for g in UI.rglob("*.stderr") if not g.with_suffix(".arch").exists()]
    assert not orphans, f"goldens without a .arch case: {orphans}"


def test_the_corpus_is_not_empty() -> None:
    assert len(_cases()) >= 20


# ---- the harness itself ---------------------------------------------------------

def test_annotation_syntax(tmp_path: Path) -> None:
    f = tmp_path / "a.arch"
    f.write_text("x = 1  # ~ERROR unknown name\n# ~^ ERROR above\n# ~? ERROR no span\n# ~^^ ERROR two up\n")
    got = [(a.line, a.text) for a in annotations(f)]
    assert got == [(1, "unknown name"), (1, "above"), (0, "no span"), (2, "two up")]


def test_unannotated_and_unmatched_are_reported(tmp_path: Path) -> None:
    case = tmp_path / "c.arch"
    case.write_text("a\nb  # ~ERROR wanted\n")
    errors = [Reported(case.resolve(), 1, "surprise")]
    problems = check_annotations(case, errors)
    assert any("unannotated error at c.arch:1" in p for p in problems)
    assert any("annotation `wanted` at c.arch:2 matched no error" in p for p in problems)


def test_normalize_and_parse(tmp_path: Path) -> None:
    text = f"{tmp_path}/x.arch:3:5: error: boom\n 3 | y\n   | ^\narchc: error: no span\n"
    norm = normalize(text, tmp_path)
    assert norm.startswith("$DIR/x.arch:3:5: error: boom")
    assert reported(norm, tmp_path) == [Reported((tmp_path / "x.arch").resolve(), 3, "boom"),
                                        Reported(None, 0, "no span")]
