"""Parsing, compiling and loading weights never execute anything taken from the input:
no eval, exec, compile of strings, pickle, or dynamic imports anywhere in the package."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ["grammar", "compiler", "backends", "archlang_pkg"]
FORBIDDEN = [
    (r"\beval\s*\(", "eval"),
    (r"\bexec\s*\(", "exec"),
    (r"(?<![.\w])compile\(", "compile of source text"),
    (r"\bimport\s+pickle\b|\bfrom\s+pickle\b|\bpickle\.", "pickle"),
    (r"allow_pickle\s*=\s*True", "np.load with pickles"),
    (r"__import__\s*\(", "__import__"),
    (r"importlib\.import_module|exec_module|run_path|runpy", "dynamic import"),
    (r"\bos\.system\b|\bsubprocess\b", "running commands"),
]


def sources():
    for d in PACKAGE_DIRS:
        yield from sorted((REPO / d).rglob("*.py"))


@pytest.mark.parametrize("pattern,what", FORBIDDEN, ids=[w for _, w in FORBIDDEN])
def test_package_never_runs_code_from_data(pattern, what):
    offenders = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
                 for p in sources() for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(pattern, line) and not line.lstrip().startswith("#")]
    assert not offenders, f"{what} found:\n" + "\n".join(offenders)


def test_the_scan_sees_the_package():
    assert len(list(sources())) > 20
