"""Shrink a file that crashes `archc` to a small one that crashes it the same way.

    python tests/fuzz/minimize.py CRASH.arch [-o OUT.arch]

"The same way" is the signature of the first failure `tests/test_fuzz.py` finds for the
file: the command, the exception's type and the innermost frame in the package (file and
function), or the kind of failure (exit code, traceback, time) when there is no exception.
Lines are removed first, then tokens (delta debugging), then names are shortened.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import test_fuzz as F  # noqa: E402


def signature(source: str) -> Optional[tuple[str, ...]]:
    _, problem = F.run_case(F.Case(source.encode("utf-8", "surrogateescape"), dict(F.LIBRARIES), guard_memory=False))
    if problem is None:
        return None
    command = problem.split("`")[1].split()[1] if "`" in problem else "?"
    tb = problem.split("--- traceback", 1)[-1] if "--- traceback" in problem else problem
    exc = ""
    for line in tb.splitlines():
        m = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Hang|NotImplemented\w*))\b", line)
        if m:
            exc = m.group(1)
    frames = [(p.split("/")[-2] + "/" + p.split("/")[-1], fn)
              for p, _, fn in re.findall(r'File "([^"]+)", line (\d+), in (\S+)', tb)
              if p.startswith(str(F.REPO)) and not p.startswith(str(F.REPO / "tests"))]
    kind = problem.split(": ", 1)[1].split("\n")[0].split(" (")[0] if ": " in problem else problem
    kind = re.sub(r"[\d.]+", "N", kind)[:60]
    return (command, exc or kind, *(frames[-1] if frames else ()))


def _ddmin(items: list[str], join: Callable[[list[str]], str], keep: Callable[[str], bool]) -> list[str]:
    n = 2
    while len(items) >= 2:
        chunk = max(1, len(items) // n)
        removed = False
        for start in range(0, len(items), chunk):
            trial = items[:start] + items[start + chunk:]
            if trial and keep(join(trial)):
                items, n, removed = trial, max(n - 1, 2), True
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(items), n * 2)
    return items


def minimize(source: str) -> str:
    target = signature(source)
    if target is None:
        raise SystemExit("the file does not crash archc")

    def keep(text: str) -> bool:
        return signature(text) == target

    lines = _ddmin(source.split("\n"), "\n".join, keep)
    text = "\n".join(lines)
    # Tokens, each with the whitespace after it, so what is left stays laid out as written.
    pieces: list[str] = []
    for tok in F._tokens(text):
        if tok.isspace() and pieces:
            pieces[-1] += tok
        else:
            pieces.append(tok)
    text = "".join(_ddmin(pieces, "".join, keep))
    # Drop comments and collapse blank lines where that keeps the crash.
    for simpler in (re.sub(r"[ \t]*#[^\n]*", "", text), re.sub(r"\n\s*\n+", "\n", text),
                    re.sub(r"[ \t]+\n", "\n", text)):
        if simpler != text and keep(simpler):
            text = simpler
    return text if text.endswith("\n") else text + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    source = Path(args.file).read_bytes().decode("utf-8", "surrogateescape")
    print("signature:", signature(source), file=sys.stderr)
    small = minimize(source)
    if args.output:
        Path(args.output).write_bytes(small.encode("utf-8", "surrogateescape"))
    else:
        sys.stdout.write(small)


if __name__ == "__main__":
    main()
