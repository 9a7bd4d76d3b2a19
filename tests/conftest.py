"""Shared fixtures: running `archc` as a user does, writing .arch sources, and `--bless`.

`archc` runs in a subprocess (`python -m archlang.compiler.cli`), so tests see exactly
what a user sees: the exit code, stdout and stderr, and no in-process state leaks
between runs.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MLP = EXAMPLES / "mlp.arch"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bless", action="store_true", default=False,
                     help="rewrite golden files (tests/ui/**/*.stderr) from the current output")


@pytest.fixture
def bless(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bless"))


def run_archc(*args: object, cwd: Path | str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`archc ARGS...` in a fresh interpreter; never raises on a non-zero exit."""
    cmd = [sys.executable, "-m", "archlang.compiler.cli", *(str(a) for a in args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture
def archc(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`archc(*args)` runs the CLI with the test's tmp_path as working directory."""
    def run(*args: object, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
        return run_archc(*args, cwd=cwd or tmp_path)
    return run


def run_archc_inprocess(*args: object, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    """`archc ARGS...` through `cli.main` in this interpreter: the same exit codes and
    output as the subprocess, several times faster. Use it where the command line is not
    what a test is about; `run_archc` stays the end-to-end path."""
    from archlang.compiler.cli import main
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help and usage errors
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture
def archc_inprocess(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """As `archc`, through `cli.main` in-process (see `run_archc_inprocess`)."""
    def run(*args: object, cwd: Path | str | None = None) -> subprocess.CompletedProcess:
        return run_archc_inprocess(*args, cwd=cwd or tmp_path)
    return run


@pytest.fixture
def write_arch(tmp_path: Path) -> Callable[..., Path]:
    """`write_arch(source, name="model.arch")` writes dedented source under tmp_path."""
    def write(source: str, name: str = "model.arch") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        return path
    return write


@pytest.fixture
def mlp_path() -> Path:
    return MLP
