"""Fuzzing `archc`: whatever the input, it exits 0 or 1 with a diagnostic, never with a
Python traceback or an internal error (exit 70), and never takes over 2 s on one file.

Three generators feed one property (`assert_robust`):

- **grammar**: `hypothesis.extra.lark.from_lark` on the real grammar (grammar/arch.lark),
  with explicit strategies for the terminals so that the text re-lexes as drawn
  (keywords and names end in a space, comments in a newline) and names come from a small
  vocabulary of plausible ones. Whole files, and grammar-drawn statements spliced into
  the body of a real model, so that names resolve and the type checker is exercised.
- **templates**: programs assembled from axis declarations, typed inputs, and statements
  drawn from the surface ops of the op registry (elementwise, reductions, softmax, norms,
  `@`, rename/split/merge/slice/select/pad/concat/stack/unstack, gather/arange/causal,
  conv/pooling/upsample, stdlib blocks, blocks of the file's own, `repeat`). Types are
  tracked while drawing, so most of these type-check and go on through lowering.
- **mutations**: the examples, the stdlib, tests/ui/**/*.arch and every ```arch block of the
  docs, with 1 to 4 random edits: tokens and lines deleted, duplicated, swapped or
  spliced from another file; names, keywords, numbers and `over` axes replaced;
  parentheses nested deeply; long chains; truncation; random unicode and raw bytes.

The property runs `archc check FILE --max-params 100000` in-process; when the check
succeeds it also runs `ir`, `emit-numpy` (whose output must be valid Python), `compile`,
and `run` with both backends on random inputs, each held to the same rules.

The default suite runs a fast subset (200 cases, about 10 s); `-m slow` has 10,000 cases
(about 8 min on 2 cores), run by CI, with a fixed seed (`derandomize=True`) so a failure
reproduces. A failure prints the file, the traceback, and where the file was saved;
`python tests/fuzz/minimize.py FILE` shrinks it. Files that once crashed the compiler live
in tests/fuzz/crashers/ and are re-run by a plain test; they are mutation seeds too.
"""
from __future__ import annotations

import functools
import gc
import hashlib
import io
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from archlang.compiler.axes import DTYPES as _DTYPES
from archlang.grammar.parse import KEYWORDS as _KEYWORDS

REPO = Path(__file__).resolve().parent.parent
CRASHERS = REPO / "tests" / "fuzz" / "crashers"

TIME_LIMIT = 2.0       # seconds per command on one file (the bound)
WATCHDOG = 6.0         # a command still running after this is interrupted and reported as a hang
MAX_PARAMS = "100000"  # every command; keeps lowering and running fast
ALLOWED_EXIT = {0, 1}

# ---- the property --------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the watchdog inside a command that runs too long (not an Exception, so
    `cli.main`'s catch-all does not turn it into an exit code)."""


@contextmanager
def _watchdog(seconds: float):
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def fire(signum, frame):
        raise Hang(f"still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    argv: list[str]
    code: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    escaped: Optional[str] = None  # a traceback of an exception that left `main`
    hung: bool = False  # interrupted by the watchdog; `escaped` shows where it was


def archc(argv: list[str]) -> Outcome:
    """`archc ARGV` through `cli.main` in this process, output captured."""
    from archlang.compiler.cli import main
    out, err = io.StringIO(), io.StringIO()
    code: Optional[int] = None
    escaped = None
    hung = False
    start = time.perf_counter()
    try:
        # Random programs divide by zero and overflow: NumPy's RuntimeWarnings are expected.
        with _watchdog(WATCHDOG), redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            code = main(argv)
    except Hang:
        escaped, hung = traceback.format_exc(), True
    except SystemExit as e:  # argparse; never expected with the arguments used here
        code = e.code if isinstance(e.code, int) else 2
    except BaseException:  # noqa: BLE001 - anything leaving main is the bug being looked for
        escaped = traceback.format_exc()
    return Outcome(argv, code, out.getvalue(), err.getvalue(), time.perf_counter() - start, escaped, hung)


def debug_traceback(argv: list[str]) -> Optional[str]:
    """Run the command's function without `main`'s handlers, to show where an internal error
    (or a ValueError that `main` turns into exit 2) was raised."""
    from archlang.backends.numpy_codegen import RunError
    from archlang.compiler import cli
    from archlang.compiler.diagnostics import CompileError, SourceCache
    args = cli.make_parser().parse_args(argv)
    try:
        with _watchdog(WATCHDOG), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            cli.COMMANDS[args.command](args, SourceCache())
    except (CompileError, RecursionError, RunError):
        return None
    except BaseException:  # noqa: BLE001
        return traceback.format_exc()
    return None


def _problem(o: Outcome) -> Optional[str]:
    if o.hung:
        return (f"still running after {WATCHDOG:.0f} s (limit {TIME_LIMIT} s), interrupted here:\n"
                + o.escaped[-4000:])
    if o.escaped:
        return f"an exception left archc:\n{o.escaped}"
    if o.code not in ALLOWED_EXIT:
        return f"exit code {o.code}"
    if "Traceback" in o.stderr or "Traceback" in o.stdout:
        return "a Python traceback in the output"
    if o.seconds > TIME_LIMIT:
        return _slow(o)
    return None


def _slow(o: Outcome) -> str:
    return f"took {o.seconds:.2f} s (limit {TIME_LIMIT} s)"


@dataclass
class Case:
    source: bytes
    extra: dict[str, str] = field(default_factory=dict)  # files beside it, for `use "x.arch"`
    lower: bool = True  # when `check` passes, also run ir / emit-numpy / compile / run
    guard_memory: bool = True  # `run` only models whose tensors are all small (see _small_enough)


RUN_MAX_ELEMENTS = 1_000_000  # per tensor, symbolic axes taken as 8 (run's random inputs use 2 and 8)


def _small_enough(path: str) -> bool:
    """Whether every input and value of the model is small enough to run in a test.

    `--max-params` bounds tensors of fixed size (it once missed the inputs:
    tests/fuzz/crashers/huge_input.arch), not products of symbolic sizes, which `run` sets
    to 2 and 8. A model that would still need large arrays is checked and compiled but not
    run, so that one case cannot take the test process's memory (crashers run regardless)."""
    import math
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph
    try:
        graph = load_graph(path, SourceCache(), max_params=int(MAX_PARAMS))
        values = [v for _, v in graph.inputs] + [o for n in graph.nodes for o in n.outputs]
        symbols = {s: 8 for s in graph.symbols}

        def elements(v) -> int:
            from archlang.backends.numpy_codegen import eval_size
            return math.prod(a.size.value if a.size.is_static else eval_size(a.size, symbols) for a in v.type.axes)
        return all(elements(v) <= RUN_MAX_ELEMENTS for v in values)
    except Exception:  # noqa: BLE001 - let `run` itself show what goes wrong
        return True


_BASE: Optional[Path] = None


def _scratch() -> Path:
    global _BASE
    if _BASE is None or not _BASE.exists():
        _BASE = Path(tempfile.mkdtemp(prefix="archlang-fuzz-"))
    return Path(tempfile.mkdtemp(dir=_BASE))


def run_case(case: Case) -> tuple[list[Outcome], Optional[str]]:
    """All commands for one file; returns the outcomes and the first problem, described."""
    work = _scratch()
    try:
        for name, text in case.extra.items():
            (work / name).write_text(text, encoding="utf-8")
        path = work / "model.arch"
        path.write_bytes(case.source)
        p = str(path)
        common = ["--max-params", MAX_PARAMS]
        commands = [["check", p, *common]]
        outcomes: list[Outcome] = []
        for i, argv in enumerate(commands):
            o = archc(argv)
            if o.seconds > TIME_LIMIT and not o.hung and _problem(o) == _slow(o):
                # Over the limit but otherwise fine: time it again, after a garbage collection, so
                # that a busy machine or a GC pause is not reported; real slowness repeats.
                gc.collect()
                o = archc(argv)
            outcomes.append(o)
            problem = _problem(o)
            if problem:
                return outcomes, _describe(case, o, problem)
            if i == 0 and o.code == 0 and case.lower:
                commands += [
                    ["ir", p, *common],
                    ["emit-numpy", p, "-o", str(work / "model_np.py"), *common],
                    ["compile", p, "-o", str(work / "model.onnx"), *common],
                ]
                if not case.guard_memory or _small_enough(p):
                    commands += [
                        ["run", p, "--backend", "numpy", "--output", str(work / "out_np.npz"), *common],
                        ["run", p, "--backend", "onnx", "--output", str(work / "out_ort.npz"), *common],
                    ]
            if argv[0] == "emit-numpy" and o.code == 0:
                module = (work / "model_np.py").read_text(encoding="utf-8")
                try:
                    compile(module, "model_np.py", "exec")
                except SyntaxError as e:
                    return outcomes, _describe(case, o, f"emit-numpy wrote a module that is not valid Python: {e}")
        return outcomes, None
    finally:
        shutil.rmtree(work, ignore_errors=True)


FAILURES = Path(tempfile.gettempdir()) / "archlang-fuzz-failures"


def _describe(case: Case, o: Outcome, problem: str) -> str:
    shown = case.source.decode("utf-8", "backslashreplace")
    if len(shown) > 4000:
        shown = shown[:4000] + "\n... (truncated)"
    saved = FAILURES / f"{hashlib.sha1(case.source).hexdigest()[:12]}.arch"
    try:
        FAILURES.mkdir(exist_ok=True)
        saved.write_bytes(case.source)
        where = f"saved as {saved}; shrink it with `python tests/fuzz/minimize.py {saved}`"
    except OSError as e:
        where = f"(could not save it: {e})"
    lines = [f"`archc {' '.join(o.argv[:1])} model.arch {' '.join(o.argv[2:])}`: {problem}",
             f"exit code {o.code}, {o.seconds:.3f} s", "--- stderr (tail) ---", o.stderr[-2000:],
             f"--- model.arch ({where}) ---", shown]
    if not o.escaped and o.code not in ALLOWED_EXIT:
        tb = debug_traceback(o.argv)
        if tb:
            lines += ["--- traceback (rerun without main's handlers) ---", tb[-4000:]]
    return "\n".join(lines)


def assert_robust(case: Case) -> None:
    _, problem = run_case(case)
    if problem is not None:
        raise AssertionError(problem)


# ---- corpus: the files the mutator starts from ----------------------------------------

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<tag>arch(?:-error)?)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
LIBRARY = re.compile(r"^#\s*file:\s*(?P<name>\S+\.arch)\s*$")


@dataclass(frozen=True)
class Seed:
    name: str
    text: str


def _load_corpus() -> tuple[list[Seed], dict[str, str]]:
    seeds: list[Seed] = []
    libraries: dict[str, str] = {}
    files = sorted((REPO / "examples").glob("*.arch")) + sorted((REPO / "stdlib").glob("*.arch")) \
        + sorted((REPO / "tests" / "ui").rglob("*.arch")) + sorted(CRASHERS.glob("*.arch"))
    for f in files:
        text = f.read_bytes().decode("utf-8", "replace")
        if len(text) <= 20_000:  # not the crasher with a 36,000-character name
            seeds.append(Seed(str(f.relative_to(REPO)), text))
    for doc in (REPO / "docs" / "language.md", REPO / "README.md"):
        if not doc.exists():
            continue
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            body = m.group("body")
            first = body.splitlines()[0] if body else ""
            lib = LIBRARY.match(first)
            if lib:
                libraries[lib.group("name")] = body
            line = text.count("\n", 0, m.start()) + 1
            seeds.append(Seed(f"{doc.relative_to(REPO)}:{line}", body))
    return seeds, libraries


CORPUS, LIBRARIES = _load_corpus()

TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+'
                   r'|\.\.\.|->|//|\*\*|<=|>=|==|!=|\s+|.', re.S)
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMERIC = re.compile(r"[0-9.]")
KEYWORDS = sorted(_KEYWORDS)
DTYPES = sorted(_DTYPES)
CORPUS_NAMES = sorted({w for s in CORPUS for w in WORD.findall(s.text)} - set(KEYWORDS))
INTERESTING_NUMBERS = ["0", "1", "2", "3", "7", "-1", "-2", "- 0", "0.0", "0.5", "1e-6", "-1e9", "1e308", "1e309",
                       "1e-320", "65536", "2147483648", "4294967297", "9223372036854775807",
                       "9223372036854775808", "18446744073709551617", str(10 ** 12), str(10 ** 30),
                       "1" + "0" * 400, "00", "0x10", "1.", ".5", "1e", "3.0e+2", "inf", "-inf"]
PUNCTUATION = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "~", "+", "-", "*", "/", "//", "**", "@", "|",
               "<", "==", "...", '"', "#", ".", ";", "\\", "$", "`", "'", "{i}"]
USE_TARGETS = ['"nn"', '"conv"', '"layers.arch"', '"model.arch"', '""', '"."', '".arch"', '"nosuch"',
               '"../model.arch"', '"sub/../layers.arch"', '"layers.arch/"', '"NN"', '"nn.arch"']


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def _solid(tokens: list[str]) -> list[int]:
    return [i for i, t in enumerate(tokens) if not t.isspace()]


Draw = Callable


def _pick(draw: Draw, items: list):
    return items[draw(st.integers(0, len(items) - 1))]


def _names_in(text: str) -> list[str]:
    return sorted(set(WORD.findall(text)) - set(KEYWORDS)) or ["x"]


def _m_delete_token(draw, text):
    toks = _tokens(text)
    solid = _solid(toks)
    if solid:
        del toks[_pick(draw, solid)]
    return "".join(toks)


def _m_duplicate_token(draw, text):
    toks = _tokens(text)
    solid = _solid(toks)
    if solid:
        i = _pick(draw, solid)
        toks.insert(i, toks[i] + " ")
    return "".join(toks)


def _m_swap_tokens(draw, text):
    toks = _tokens(text)
    solid = _solid(toks)
    if len(solid) > 1:
        i, j = _pick(draw, solid), _pick(draw, solid)
        toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


def _m_replace_name(draw, text):
    toks = _tokens(text)
    spots = [i for i, t in enumerate(toks) if WORD.fullmatch(t)]
    if spots:
        pool = _pick(draw, [_names_in(text), _names_in(text), KEYWORDS, DTYPES, CORPUS_NAMES,
                            ["x", "_", "a" * 300, "\u00e9t\u00e9", "batch", "seq", "key", "three", "i"]])
        toks[_pick(draw, spots)] = _pick(draw, pool)
    return "".join(toks)


def _m_replace_number(draw, text):
    toks = _tokens(text)
    spots = [i for i, t in enumerate(toks) if NUMERIC.match(t) and t[0] != "."] or \
            [i for i, t in enumerate(toks) if WORD.fullmatch(t)]
    if spots:
        toks[_pick(draw, spots)] = _pick(draw, INTERESTING_NUMBERS)
    return "".join(toks)


def _m_over_axis(draw, text):
    """Replace a name in an axis position (after `over`, `->`, inside `[...]`, in `|...|`)."""
    toks = _tokens(text)
    spots = []
    prev = None
    for i, t in enumerate(toks):
        if t.isspace():
            continue
        if WORD.fullmatch(t) and prev in ("over", "->", "[", ",", "(", "|", "~"):
            spots.append(i)
        prev = t
    if spots:
        toks[_pick(draw, spots)] = _pick(draw, _names_in(text))
    return "".join(toks)


def _m_keyword(draw, text):
    toks = _tokens(text)
    spots = [i for i, t in enumerate(toks) if t in KEYWORDS or t in DTYPES]
    if spots:
        toks[_pick(draw, spots)] = _pick(draw, KEYWORDS + DTYPES)
    return "".join(toks)


def _m_use_target(draw, text):
    toks = _tokens(text)
    spots = [i for i, t in enumerate(toks) if t.startswith('"')]
    new = _pick(draw, USE_TARGETS)
    if spots and draw(st.booleans()):
        toks[_pick(draw, spots)] = new
        return "".join(toks)
    return f"use {new}\n" + text


def _m_lines(draw, text):
    lines = text.split("\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "move"]))
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(j, lines[i])
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(j, lines.pop(i))
    return "\n".join(lines)


def _m_splice(draw, text):
    """Lines from another corpus file, inserted at a random line."""
    other = draw(st.sampled_from(CORPUS)).text.split("\n")
    a = draw(st.integers(0, len(other) - 1))
    b = draw(st.integers(a, min(len(other), a + 6)))
    lines = text.split("\n")
    at = draw(st.integers(0, len(lines)))
    return "\n".join(lines[:at] + other[a:b] + lines[at:])


def _m_insert(draw, text):
    at = draw(st.integers(0, len(text)))
    what = draw(st.one_of(st.sampled_from(PUNCTUATION + KEYWORDS + DTYPES),
                          st.text(min_size=1, max_size=4),
                          st.sampled_from(["\x00", "\ufeff", "\u200b", "\r", "\t", "\x0b", "\x0c", "\u2028",
                                           "\U0001f600", "\u00e9", "\u0301", "\\u0041", "\ud7ff"])))
    return text[:at] + what + text[at:]


def _m_truncate(draw, text):
    return text[:draw(st.integers(0, len(text)))]


def _m_nest(draw, text):
    """Wrap a name or number in many parentheses, or prefix many unary minuses or `not`s."""
    toks = _tokens(text)
    spots = [i for i, t in enumerate(toks) if WORD.fullmatch(t) or NUMERIC.match(t)]
    if not spots:
        return text
    i = _pick(draw, spots)
    depth = draw(st.sampled_from([1, 2, 3, 10, 100, 400, 2000]))
    kind = draw(st.sampled_from(["paren", "minus", "not", "call"]))
    if kind == "paren":
        toks[i] = "(" * depth + toks[i] + ")" * depth
    elif kind == "minus":
        toks[i] = "-" * depth + toks[i]
    elif kind == "not":
        toks[i] = "not " * depth + toks[i]
    else:
        fn = draw(st.sampled_from(["relu", "neg", "abs", "exp", "f"]))
        toks[i] = (fn + "(") * depth + toks[i] + ")" * depth
    return "".join(toks)


def _m_chain(draw, text):
    """Repeat a short span of tokens many times (long expressions, many statements)."""
    toks = _tokens(text)
    solid = _solid(toks)
    if not solid:
        return text
    i = _pick(draw, solid)
    j = min(len(toks), i + draw(st.integers(1, 8)))
    times = draw(st.sampled_from([2, 5, 50, 500, 3000]))
    times = min(times, 200_000 // max(1, len("".join(toks[i:j]))))  # at most ~200 kB more
    return "".join(toks[:j] + toks[i:j] * times + toks[j:])


def _m_whitespace(draw, text):
    kind = draw(st.sampled_from(["crlf", "cr", "tabs", "none", "bom"]))
    if kind == "crlf":
        return text.replace("\n", "\r\n")
    if kind == "cr":
        return text.replace("\n", "\r")
    if kind == "tabs":
        return text.replace("  ", "\t")
    if kind == "bom":
        return "\ufeff" + text
    return re.sub(r"[ \t]+", " ", text)


MUTATIONS = [_m_delete_token, _m_duplicate_token, _m_swap_tokens, _m_replace_name, _m_replace_number,
             _m_over_axis, _m_keyword, _m_use_target, _m_lines, _m_splice, _m_insert, _m_truncate,
             _m_nest, _m_chain, _m_whitespace]


def _corrupt_bytes(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["insert", "flip", "utf16", "latin1"]))
    if kind == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if kind == "latin1":
        return data.decode("utf-8", "replace").encode("latin-1", "replace") + b"\xe9\xff"
    at = draw(st.integers(0, len(data)))
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    if at < len(data):
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data


@st.composite
def mutated_programs(draw) -> Case:
    seed = draw(st.sampled_from(CORPUS))
    text = seed.text
    for _ in range(draw(st.integers(1, 4))):
        text = draw(st.sampled_from(MUTATIONS))(draw, text)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        data = _corrupt_bytes(draw, data)
    return Case(data, dict(LIBRARIES))


# ---- grammar: programs drawn from grammar/arch.lark -----------------------------------

NAME_VOCABULARY = ["x", "y", "h", "w", "b", "q", "k", "v", "a", "s", "ids", "tokens", "mask", "img", "g",
                   "batch", "seq", "key", "embed", "hidden", "heads", "head", "three", "vocab", "ctx", "d",
                   "features", "classes", "chan", "height", "width", "kw", "din", "dout", "n", "i",
                   "relu", "gelu", "exp", "softmax", "log_softmax", "sum", "mean", "max", "min", "prod",
                   "layernorm", "rmsnorm", "rename", "split", "merge", "slice", "select", "concat", "pad",
                   "stack", "unstack", "gather", "arange", "causal", "where", "cast", "conv", "maxpool",
                   "avgpool", "upsample", "sqrt", "tanh", "normal", "zeros", "ones", "uniform", "xavier",
                   "kaiming", "constant", "eps", "stride", "padding", "kernel", "scale", "mode", "same",
                   "start", "end", "step", "before", "after", "value", "Linear", "LayerNorm", "RMSNorm",
                   "MLP", "Embedding", "Conv2d", "BatchNorm2d", "M", "Net", "Layer", "Block"]


def _spaced(s: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return s.map(lambda t: t + " ")


def _grammar_explicit() -> dict[str, st.SearchStrategy[str]]:
    from archlang.grammar.parse import parser
    random_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
        lambda n: n not in KEYWORDS and n not in DTYPES)
    explicit = {
        "NAME": _spaced(st.one_of(st.sampled_from(NAME_VOCABULARY), random_name)),
        "INT": _spaced(st.one_of(st.integers(0, 8).map(str), st.sampled_from(["16", "0", "100000", str(10 ** 12)]))),
        "NUMBER": _spaced(st.sampled_from(["0.5", "1.0", "2.", ".25", "1e-5", "3e2", "1e400", "0.0", "7"])),
        "STRING": _spaced(st.sampled_from(['"nn"', '"conv"', '"h.{i}"', '"fc.weight"', '""', '"layers.arch"',
                                           '"a.b"', '"{i}"', '"linear"', '"nearest"', '"same"'])),
        "DTYPE": _spaced(st.sampled_from(DTYPES)),
        "COMMENT": st.sampled_from(["# comment\n", "#\n", "# é ✓\n"]),
        "COMPARE": _spaced(st.sampled_from(["<", "<=", ">", ">=", "==", "!="])),
    }
    for t in parser().terminals:
        if t.name in explicit:
            continue
        if t.name.startswith("__IGNORE"):
            explicit[t.name] = st.sampled_from([" ", "\n", "\t", "\r\n"])
        elif t.pattern.type == "str":
            explicit[t.name] = st.just(t.pattern.value + " ")
        else:
            raise AssertionError(f"the grammar has a new regex terminal {t.name}: give it a strategy here")
    return explicit


@functools.lru_cache(maxsize=None)
def _grammar_strategy(start: str) -> st.SearchStrategy[str]:
    from lark import Lark

    from archlang.grammar.gen_parser import GRAMMAR, OPTIONS
    lark = Lark.open(str(GRAMMAR), **OPTIONS)  # built from the grammar: the prebuilt tables carry no rules
    # from_lark refuses explicit strategies for terminals that `start` cannot reach.
    terminals, rules, ignore = lark.grammar.compile([start], ())
    reachable = {t.name for t in terminals} | set(ignore) | {
        sym.name for r in rules for sym in r.expansion if sym.is_term}
    explicit = {k: v for k, v in _grammar_explicit().items() if k in reachable}
    return from_lark(lark, start=start, explicit=explicit)


# A model for grammar-drawn statements and expressions to land in: the names of
# NAME_VOCABULARY resolve to values and axes here.
HOST = """use "nn"
axis batch, seq
axis key ~ seq
axis embed = 4, heads = 2, head = embed / heads, hidden = 8, three = 3, vocab = 5, ctx = 6, d = 4
axis chan = 2, height = 5, width = 5, n = 3, din = 4, dout = 3

model M(x: f32[batch, seq, embed], ids: i64[batch, seq], mask: bool[batch, key],
        img: f32[batch, chan, height, width]) -> f32[batch, seq, embed] {
  param w: [embed, hidden] = normal(0.02)
  param b: [hidden] = zeros
  param g: [embed] = ones
  param wte: [vocab, embed] = normal(0.02)
  k = rename(x, seq -> key)
  v = k
  q = x
  h = x @ w + b
%s
  return x
}
"""


@st.composite
def grammar_programs(draw) -> Case:
    if draw(st.booleans()):  # a whole file
        text = draw(_grammar_strategy("start"))
    else:  # statements in a model where the usual names are defined
        stmts = draw(st.lists(_grammar_strategy("_stmt"), min_size=1, max_size=3))
        text = HOST % "\n".join("  " + s for s in stmts)
    return Case(text.encode("utf-8"), dict(LIBRARIES))


# ---- templates: well-typed-ish programs from the op registry ---------------------------

FLOAT_FNS = ["relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softplus", "exp", "log", "sqrt",
             "rsqrt", "erf", "sin", "cos", "abs", "neg"]
FLOATS = ("f32", "f64", "f16")
NUMERIC_DTYPES = ("f32", "f64", "f16", "i64", "i32")


@dataclass
class T:
    dtype: str
    axes: tuple[str, ...]


class _Template:
    """Draws one program while tracking every value's type, so most programs check."""

    def __init__(self, draw):
        self.draw = draw
        self.sizes: dict[str, Optional[int]] = {}  # axis -> size (None: symbolic)
        self.twin: dict[str, str] = {}  # axis -> a declared `~` twin
        self.top: list[str] = []
        self.body: list[str] = []
        self.env: dict[str, T] = {}
        self.params: dict[str, T] = {}
        self.inputs: list[str] = []
        self.n = 0
        self.nn = False
        self.blocks: list[tuple[str, bool]] = []  # (name, has a `scale` constant)
        self.pending: set[str] = set()  # axes declared by the statement being drawn
        self.conv_lib = False  # `use "conv"`

    # -- drawing helpers --
    def rint(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def chance(self, p: float) -> bool:
        return self.draw(st.integers(0, 999)) < p * 1000

    def choice(self, items):
        items = list(items)
        return items[self.rint(0, len(items) - 1)]

    def subset(self, items, lo=1):
        items = list(items)
        chosen = [a for a in items if self.draw(st.booleans())]
        while len(chosen) < min(lo, len(items)):
            chosen.append(self.choice([a for a in items if a not in chosen]))
        return [a for a in items if a in chosen]  # keep order

    def fresh(self, prefix="v"):
        self.n += 1
        return f"{prefix}_{self.n}"  # `_`: never a dtype (`u8`) or a keyword

    def static(self, axes):
        return [a for a in axes if (self.sizes.get(a) or 0) >= 1 and a not in self.pending]

    def new_axis(self, name, size):
        """An axis an op declares: usable once the statement that makes it is written."""
        self.sizes[name] = size
        self.pending.add(name)

    def values(self, pred=lambda t: True):
        return [n for n, t in self.env.items() if pred(t)]

    # -- declarations --
    def declare_axes(self):
        self.top.append("axis batch")
        self.sizes["batch"] = None
        if self.chance(0.5):
            self.top.append("axis seq\naxis key ~ seq")
            self.sizes["seq"] = None
            self.sizes["key"] = None
            self.twin["seq"] = "key"
        pool = ["embed", "hidden", "d", "c", "n", "vocab", "three"]
        decls = []
        for name in self.subset(pool, lo=2)[:5]:
            size = self.choice([1, 2, 3, 4, 4, 6]) if name != "three" else 3
            if name == "vocab":
                size = self.rint(2, 7)
            if self.chance(0.15):
                self.top.append(f"const {name}_size = {size}")
                decls.append(f"{name} = {name}_size")
            else:
                decls.append(f"{name} = {size}")
            self.sizes[name] = size
        self.top.append("axis " + ", ".join(decls))
        if self.sizes.get("embed") in (2, 4, 6) and self.chance(0.6):
            heads = 2
            self.top.append(f"axis heads = {heads}, head = embed / heads")
            self.sizes["heads"], self.sizes["head"] = heads, self.sizes["embed"] // heads
        if self.chance(0.3):
            base = self.choice(self.static(self.sizes))
            self.top.append(f"axis twice = 2 * {base}, half = ({base} + 1) // 2")
            self.sizes["twice"], self.sizes["half"] = 2 * self.sizes[base], (self.sizes[base] + 1) // 2
        for a in self.static(list(self.sizes)):
            if self.chance(0.4):
                self.top.append(f"axis {a}_t ~ {a}")
                self.sizes[f"{a}_t"] = self.sizes[a]
                self.twin[a] = f"{a}_t"
        if self.chance(0.3):
            self.top.append(f"const depth = {self.rint(1, 3)}\nconst eps = 1e-5")
        if self.chance(0.4):
            self.top.insert(0, 'use "nn"')
            self.nn = True

    def declare_inputs(self) -> list[str]:
        sig = []
        seq = ["seq"] if "seq" in self.sizes else []
        static = self.static(self.sizes)
        dtype = "f32" if self.chance(0.8) else self.choice(["f64", "f16", "i64", "bf16"])
        x_axes = ["batch", *seq, *self.subset(static, lo=1)[:3]]
        sig.append(("x", T(dtype, tuple(x_axes))))
        if self.chance(0.4):
            sig.append(("y", T(self.choice(["f32", "f32", "f64"]), tuple(["batch", *self.subset(static, lo=0)[:2]]))))
        if "vocab" in self.sizes and self.chance(0.5):
            sig.append(("ids", T("i64", tuple(["batch", *seq]))))
        if self.chance(0.25):
            sig.append(("mask", T("bool", tuple(["batch", *seq, *self.subset(static, lo=0)[:1]]))))
        if self.chance(0.2):
            sig.append(("s", T("f32", ())))
        if self.chance(0.2):
            self.top.append(f"axis chan = {self.rint(1, 3)}, height = {self.rint(2, 7)}, width = {self.rint(2, 7)}")
            for a in ("chan", "height", "width"):
                self.sizes[a] = int(re.search(rf"{a} = (\d+)", self.top[-1]).group(1))
            sig.append(("img", T("f32", ("batch", "chan", "height", "width"))))
            if self.chance(0.5):
                self.top.insert(0, 'use "conv"')
                self.conv_lib = True
        for name, t in sig:
            self.env[name] = t
            self.inputs.append(name)
        return [f"{n}: {t.dtype}[{', '.join(t.axes)}]" for n, t in sig]

    def param(self, axes, init=None, dtype="f32") -> str:
        name = self.fresh("p")
        init = init or self.choice(["normal(0.02)", "normal(0.02)", "zeros", "ones", "uniform(-0.5, 0.5)",
                                    "xavier", "kaiming", "uniform()", "constant(0.5)", "normal(1.0, 0.1)"])
        if len(axes) == 0 and init in ("xavier", "kaiming", "uniform()"):
            init = "ones"
        dt = "" if dtype == "f32" else f"{dtype}"
        self.body.append(f"param {name}: {dt}[{', '.join(axes)}] = {init}")
        self.params[name] = T(dtype, tuple(axes))
        self.env[name] = T(dtype, tuple(axes))
        return name

    # -- expressions: each returns (text, type) or None when it does not apply --
    def operand(self, pred=lambda t: True, depth=0) -> Optional[tuple[str, T]]:
        names = self.values(pred)
        if depth < 2 and self.chance(0.25):
            e = self.expression(depth + 1)
            if e and pred(e[1]):
                return f"({e[0]})" if not e[0].replace("_", "").isalnum() else e[0], e[1]
        if not names:
            return None
        n = self.choice(names)
        return n, self.env[n]

    def expression(self, depth=0) -> Optional[tuple[str, T]]:
        makers = [self.e_unary, self.e_binary, self.e_literal, self.e_compare, self.e_cast, self.e_reduce,
                  self.e_softmax, self.e_norm, self.e_linear, self.e_contract, self.e_rename, self.e_split,
                  self.e_merge, self.e_slice, self.e_select, self.e_pad, self.e_concat, self.e_stack,
                  self.e_gather, self.e_arange, self.e_causal, self.e_conv, self.e_conv_lib, self.e_pool,
                  self.e_block, self.e_nn]
        for _ in range(4):
            r = self.choice(makers)(depth)
            if r is not None:
                return r
        return None

    def e_unary(self, depth):
        o = self.operand(lambda t: t.dtype in FLOATS, depth)
        if not o:
            return None
        fn = self.choice(FLOAT_FNS + ["-"])
        return (f"-{o[0]}" if fn == "-" else f"{fn}({o[0]})"), o[1]

    def _union(self, a: T, b: T) -> T:
        return T(a.dtype, a.axes + tuple(x for x in b.axes if x not in a.axes))

    def e_binary(self, depth):
        a = self.operand(lambda t: t.dtype in NUMERIC_DTYPES, depth)
        if not a:
            return None
        b = self.operand(lambda t: t.dtype == a[1].dtype, depth)
        if not b:
            return None
        ops = ["+", "-", "*", "minimum", "maximum", "min", "max"]
        if a[1].dtype in FLOATS:
            ops += ["/", "**"]
        op = self.choice(ops)
        t = self._union(a[1], b[1])
        if op.isalpha():
            return f"{op}({a[0]}, {b[0]})", t
        rhs = f"abs({b[0]})" if op == "**" and a[1].dtype in FLOATS else b[0]
        return f"{a[0]} {op} {rhs}", t

    def e_literal(self, depth):
        a = self.operand(lambda t: t.dtype in NUMERIC_DTYPES, depth)
        if not a:
            return None
        lit = self.choice(["2", "1", "0", "0.5", "1e-3", "|" + self.choice(list(self.sizes)) + "|", "inf", "3"])
        if a[1].dtype not in FLOATS and lit in ("0.5", "1e-3", "inf"):
            lit = "2"
        op = self.choice(["+", "-", "*"] + (["/"] if a[1].dtype in FLOATS else []))
        return (f"{a[0]} {op} {lit}" if self.draw(st.booleans()) else f"{lit} {op} {a[0]}"), a[1]

    def e_compare(self, depth):
        a = self.operand(lambda t: t.dtype in NUMERIC_DTYPES, depth)
        if not a:
            return None
        b = self.operand(lambda t: t.dtype == a[1].dtype, depth) or ("0", T(a[1].dtype, ()))
        cond = f"{a[0]} {self.choice(['<', '<=', '>', '>=', '==', '!='])} {b[0]}"
        t = self._union(a[1], b[1])
        r = self.choice(["cond", "where", "logic"])
        if r == "where":
            return f"where({cond}, {a[0]}, {b[0]})", T(a[1].dtype, t.axes)
        if r == "logic":
            m = self.values(lambda t: t.dtype == "bool")
            if m:
                other = self.choice(m)
                return f"(not ({cond})) {self.choice(['and', 'or'])} {other}", self._union(T("bool", t.axes), self.env[other])
        return f"({cond})", T("bool", t.axes)

    def e_cast(self, depth):
        a = self.operand(depth=depth)
        if not a:
            return None
        dt = self.choice(["f32", "f32", "f64", "i64", "i32", "f16", "bool", "u8"])
        return f"cast({a[0]}, {dt})", T(dt, a[1].axes)

    def e_reduce(self, depth):
        a = self.operand(lambda t: t.dtype != "bool" and len(t.axes) > 0, depth)
        if not a:
            return None
        fn = self.choice(["sum", "max", "min", "prod"] + (["mean"] if a[1].dtype in FLOATS else []))
        over = self.subset(a[1].axes, lo=1)
        return f"{fn}({a[0]} over {', '.join(over)})", T(a[1].dtype, tuple(x for x in a[1].axes if x not in over))

    def e_softmax(self, depth):
        a = self.operand(lambda t: t.dtype in FLOATS and len(t.axes) > 0, depth)
        if not a:
            return None
        fn = self.choice(["softmax", "log_softmax"])
        return f"{fn}({a[0]} over {self.choice(a[1].axes)})", a[1]

    def e_norm(self, depth):
        a = self.operand(lambda t: t.dtype in FLOATS and self.static(t.axes), depth)
        if not a:
            return None
        over = self.subset(self.static(a[1].axes), lo=1)
        fn = self.choice(["layernorm", "rmsnorm", "batchnorm"])
        eps = self.choice(["", ", eps=1e-5", ", eps=eps" if "const eps" in "\n".join(self.top) else "", ", eps=0"])
        dt = a[1].dtype
        if fn == "batchnorm":
            c = over[:1]
            ps = [self.param(c, init, dt) for init in ("ones", "zeros", "zeros", "ones")]
            return f"batchnorm({a[0]}, {', '.join(ps)}{eps} over {c[0]})", a[1]
        ps = []
        if self.draw(st.booleans()):
            ps.append(self.param(over, "ones", dt))
            if fn == "layernorm" and self.draw(st.booleans()):
                ps.append(self.param(over, "zeros", dt))
        args = ", ".join([a[0], *ps])
        return f"{fn}({args}{eps} over {', '.join(over)})", a[1]

    def e_linear(self, depth):
        a = self.operand(lambda t: t.dtype in FLOATS and self.static(t.axes), depth)
        if not a:
            return None
        contract = self.subset(self.static(a[1].axes), lo=1)[:2]
        new = [x for x in self.static(self.sizes) if x not in a[1].axes]
        out = self.subset(new, lo=0)[:2]
        w = self.param(contract + out, dtype=a[1].dtype)
        keep = [x for x in a[1].axes if x not in contract]
        if len(contract) > 1 and self.chance(0.3):  # keep one shared axis as a batch axis
            return f"({a[0]} @ {w} over {contract[0]})", T(a[1].dtype, tuple(keep + [contract[1]] + out))
        return f"{a[0]} @ {w}", T(a[1].dtype, tuple(keep + out))

    def e_contract(self, depth):
        a = self.operand(lambda t: t.dtype in FLOATS and len(t.axes) > 0, depth)
        if not a:
            return None
        b = self.operand(lambda t: t.dtype == a[1].dtype and set(t.axes) & set(a[1].axes), depth)
        if not b:
            return None
        shared = [x for x in a[1].axes if x in b[1].axes]
        over = self.subset(shared, lo=1)
        keep = tuple(x for x in a[1].axes if x not in over) + tuple(x for x in b[1].axes if x not in a[1].axes)
        return f"({a[0]} @ {b[0]} over {', '.join(over)})", T(a[1].dtype, keep)

    def e_rename(self, depth):
        a = self.operand(lambda t: any(x in self.twin and self.twin[x] not in t.axes for x in t.axes), depth)
        if not a:
            return None
        src = self.choice([x for x in a[1].axes if x in self.twin and self.twin[x] not in a[1].axes])
        dst = self.twin[src]
        return f"rename({a[0]}, {src} -> {dst})", T(a[1].dtype, tuple(dst if x == src else x for x in a[1].axes))

    def e_split(self, depth):
        a = self.operand(lambda t: any((self.sizes.get(x) or 0) in (4, 6) for x in t.axes), depth)
        if not a:
            return None
        src = self.choice([x for x in a[1].axes if (self.sizes.get(x) or 0) in (4, 6)])
        p, q = self.fresh("sp"), self.fresh("sq")
        size = self.sizes[src]
        first = self.choice([2, size // 2, 1, size])
        self.body.append(f"axis {p} = {first}, {q} = {size // first}")
        self.sizes[p], self.sizes[q] = first, size // first
        axes = []
        for x in a[1].axes:
            axes += [p, q] if x == src else [x]
        return f"split({a[0]}, {src} -> ({p}, {q}))", T(a[1].dtype, tuple(axes))

    def e_merge(self, depth):
        a = self.operand(lambda t: len(self.static(t.axes)) >= 2, depth)
        if not a:
            return None
        two = self.subset(self.static(a[1].axes), lo=2)[:2]
        if self.draw(st.booleans()):
            two.reverse()
        new = self.fresh("mg")
        self.new_axis(new, self.sizes[two[0]] * self.sizes[two[1]])
        axes = tuple(x for x in a[1].axes if x not in two) + (new,)
        return f"merge({a[0]}, ({two[0]}, {two[1]}) -> {new})", T(a[1].dtype, axes)

    def e_slice(self, depth):
        a = self.operand(lambda t: len(self.static(t.axes)) > 0, depth)
        if not a:
            return None
        src = self.choice(self.static(a[1].axes))
        n = self.sizes[src]
        bounds = {"start": self.rint(-n, n), "end": self.rint(-n, n + 1), "step": self.choice([1, 1, 2, 3])}
        kws = {k: v for k, v in bounds.items() if self.draw(st.booleans())}
        size = len(range(n)[slice(kws.get("start"), kws.get("end"), kws.get("step"))])
        if size == 0 and self.chance(0.9):  # an empty slice is an error; keep a few
            kws, size = {}, n
        new = self.fresh("sl")
        self.new_axis(new, size)
        return (f"slice({a[0]}, {src} -> {new}{''.join(f', {k}={v}' for k, v in kws.items())})",
                T(a[1].dtype, tuple(new if x == src else x for x in a[1].axes)))

    def e_select(self, depth):
        a = self.operand(lambda t: len(self.static(t.axes)) > 0, depth)
        if not a:
            return None
        src = self.choice(self.static(a[1].axes))
        i = self.rint(-self.sizes[src], self.sizes[src] - 1) if self.sizes[src] > 0 else 0
        return f"select({a[0]}, {src}, {i})", T(a[1].dtype, tuple(x for x in a[1].axes if x != src))

    def e_pad(self, depth):
        a = self.operand(lambda t: len(t.axes) > 0 and t.dtype != "bool", depth)
        if not a:
            return None
        src = self.choice(a[1].axes)
        before, after = self.rint(0, 2), self.rint(0, 2)
        new = self.fresh("pd")
        n = self.sizes.get(src)
        self.new_axis(new, None if n is None else n + before + after)
        value = self.choice(["", ", value=0", ", value=-1", ", value=inf"]) if a[1].dtype in FLOATS else ""
        return (f"pad({a[0]}, {src} -> {new}, before={before}, after={after}{value})",
                T(a[1].dtype, tuple(new if x == src else x for x in a[1].axes)))

    def e_concat(self, depth):
        a = self.operand(lambda t: len(t.axes) > 0, depth)
        if not a:
            return None
        ax = self.choice(a[1].axes)
        b = self.operand(lambda t: t.dtype == a[1].dtype and set(t.axes) <= set(a[1].axes), depth)
        if not b:
            return None
        new = self.fresh("cc")
        n = self.sizes.get(ax)
        self.new_axis(new, None if n is None else n + (n if ax in b[1].axes else 1))
        return (f"concat({a[0]}, {b[0]} over {ax} -> {new})",
                T(a[1].dtype, tuple(new if x == ax else x for x in a[1].axes)))

    def e_stack(self, depth):
        a = self.operand(depth=depth)
        if not a:
            return None
        k = self.rint(1, 3)
        new = self.fresh("st")
        self.new_axis(new, k)
        return f"stack({', '.join([a[0]] * k)} over {new})", T(a[1].dtype, (new,) + a[1].axes)

    def e_gather(self, depth):
        ids = self.values(lambda t: t.dtype in ("i64", "i32"))
        static = self.static(self.sizes)
        if not ids or not static:
            return None
        i = self.choice(ids)
        rows = self.choice(static)
        cols = self.subset([x for x in static if x != rows and x not in self.env[i].axes], lo=0)[:1]
        if rows in self.env[i].axes:
            return None
        table = self.param([rows, *cols])
        if self.draw(st.booleans()):
            return f"{table}[{i}]", T("f32", self.env[i].axes + tuple(cols))
        return f"gather({table}, {i} over {rows})", T("f32", self.env[i].axes + tuple(cols))

    def e_arange(self, depth):
        ax = self.choice(list(self.sizes))
        a = self.operand(lambda t: t.dtype == "i64", depth)
        if a and ax not in a[1].axes and self.draw(st.booleans()):
            return f"{a[0]} + arange({ax})", T("i64", a[1].axes + (ax,))
        return f"arange({ax})", T("i64", (ax,))

    def e_causal(self, depth):
        pairs = [(a, b) for a, b in self.twin.items()]
        if not pairs:
            return None
        a, b = self.choice(pairs)
        return f"causal({a}, {b})", T("f32", (a, b))

    def e_conv(self, depth):
        a = self.operand(lambda t: t.dtype == "f32" and "chan" in t.axes and "height" in t.axes
                         and "width" in t.axes, depth)
        if not a:
            return None
        k, kw, feat = self.fresh("k"), self.fresh("kw"), self.fresh("feat")
        ks, kws = self.rint(1, 3), self.rint(1, 3)
        fs = self.rint(1, 3)
        self.body.append(f"axis {k} = {ks}, {kw} = {kws}, {feat} = {fs}")
        stride, dil = self.choice([1, 1, 2]), self.choice([1, 1, 2])
        pad = self.choice(["0", "1", "same"])
        transpose = self.chance(0.3)
        depthwise = not transpose and self.chance(0.2)
        spatial = self.choice([("height", "width"), ("height",), ("width",)])
        kernel = [k, kw][:len(spatial)]
        if depthwise:  # groups = chan: weight [chan, one, k...], the output channel axis is chan
            one = self.fresh("one")
            self.body.append(f"axis {one} = 1")
            self.sizes[one] = 1
            w = self.param(["chan", one, *kernel], init=f"kaiming(over {one})")
            feat = "chan"
        else:
            w = self.param(["chan", feat, *kernel] if transpose else [feat, "chan", *kernel],
                           init=self.choice(["kaiming(over chan)", "normal(0.1)"]))
        bias = f", {self.param([feat], 'zeros')}" if self.draw(st.booleans()) else ""
        outs = [self.fresh("o") for _ in spatial]
        fn = "conv_transpose" if transpose else "conv"
        if transpose and pad == "same":
            pad = "0"
        extra = ""
        if transpose and stride > 1 and self.draw(st.booleans()):
            extra = ", output_padding=1"
        for s, o, kk in zip(spatial, outs, [ks, kws]):
            n = self.sizes[s]
            pn = (0 if pad == "0" else 1) if pad != "same" else None
            if transpose:
                self.new_axis(o, (n - 1) * stride - 2 * pn + dil * (kk - 1) + 1 + (1 if extra else 0))
            elif pad == "same":
                self.new_axis(o, -(-n // stride))
            else:
                self.new_axis(o, (n + 2 * pn - dil * (kk - 1) - 1) // stride + 1)
        axes = tuple({"chan": feat, **dict(zip(spatial, outs))}.get(x, x) for x in a[1].axes)
        mapping = f"({', '.join(spatial)}) -> ({', '.join(outs)})" if len(spatial) > 1 else f"{spatial[0]} -> {outs[0]}"
        return (f"{fn}({a[0]}, {w}{bias}, stride={stride}, padding={pad}, dilation={dil}{extra} over {mapping})",
                T("f32", axes))

    def e_conv_lib(self, depth):
        """The blocks of `use "conv"` on an image [..., chan, height, width]."""
        if not self.conv_lib:
            return None
        a = self.operand(lambda t: t.dtype == "f32" and {"chan", "height", "width"} <= set(t.axes), depth)
        if not a:
            return None
        k, feat = self.fresh("k"), self.fresh("feat")
        ks = self.rint(1, 3)
        self.body.append(f"axis {k} = {ks}, {feat} = {self.rint(1, 3)}")
        inst = self.fresh("conv")
        kind = self.choice(["Conv2d same", "Conv2d same, no bias", "DepthwiseConv2d", "BatchNorm2d", "Conv2d",
                            "ConvTranspose2d"])
        same = lambda out: T("f32", tuple({"chan": out}.get(x, x) for x in a[1].axes))  # noqa: E731
        if kind in ("Conv2d same", "Conv2d same, no bias"):  # stdlib Conv2d keeping the size
            bias = ", bias=false" if kind.endswith("no bias") else ""
            return f"Conv2d[chan, {feat}, {k}, height, width, height, width, padding=same{bias}]({a[0]}) as {inst}", \
                same(feat)
        if kind == "DepthwiseConv2d":
            return f"DepthwiseConv2d[chan, {k}, height, width]({a[0]}) as {inst}", same("chan")
        if kind == "BatchNorm2d":
            return f"BatchNorm2d[chan]({a[0]}) as {inst}", a[1]
        stride, pad = self.rint(1, 2), self.rint(0, 1)
        oh, ow = self.fresh("oh"), self.fresh("ow")
        if kind == "Conv2d":
            size = [(self.sizes[d] + 2 * pad - ks) // stride + 1 for d in ("height", "width")]
        else:
            size = [(self.sizes[d] - 1) * stride - 2 * pad + ks for d in ("height", "width")]
        self.body.append(f"axis {oh} = {max(size[0], 1)}, {ow} = {max(size[1], 1)}")
        self.sizes[oh], self.sizes[ow] = size
        axes = tuple({"chan": feat, "height": oh, "width": ow}.get(x, x) for x in a[1].axes)
        return (f"{kind}[chan, {feat}, {k}, height, width, {oh}, {ow}, stride={stride}, padding={pad}]({a[0]}) as {inst}",
                T("f32", axes))

    def e_pool(self, depth):
        a = self.operand(lambda t: t.dtype in FLOATS and len(self.static(t.axes)) >= 1, depth)
        if not a:
            return None
        spatial = self.subset(self.static(a[1].axes), lo=1)[:2]
        outs = [self.fresh("o") for _ in spatial]
        mapping = f"({', '.join(spatial)}) -> ({', '.join(outs)})" if len(spatial) > 1 else f"{spatial[0]} -> {outs[0]}"
        fn = self.choice(["maxpool", "avgpool", "upsample"])
        if fn == "upsample":
            scale = self.rint(1, 3)
            for s, o in zip(spatial, outs):
                self.new_axis(o, self.sizes[s] * scale)
            return f"upsample({a[0]}, scale={scale}, mode={self.choice(['nearest', 'linear'])} over {mapping})", \
                T(a[1].dtype, tuple(dict(zip(spatial, outs)).get(x, x) for x in a[1].axes))
        kern = self.rint(1, max(1, min(3, *(self.sizes[x] for x in spatial))))
        stride = self.rint(1, 2)
        pad = self.rint(0, kern // 2)
        for s, o in zip(spatial, outs):
            self.new_axis(o, (self.sizes[s] + 2 * pad - kern) // stride + 1)
        extra = f", count_include_pad={self.rint(0, 1)}" if fn == "avgpool" and self.chance(0.3) else ""
        return (f"{fn}({a[0]}, kernel={kern}, stride={stride}, padding={pad}{extra} over {mapping})",
                T(a[1].dtype, tuple(dict(zip(spatial, outs)).get(x, x) for x in a[1].axes)))

    def e_block(self, depth):
        if not self.blocks:
            return None
        a = self.operand(lambda t: t.dtype == "f32" and self.static(t.axes), depth)
        if not a:
            return None
        name, scaled = self.choice(self.blocks)
        ax = self.choice(self.static(a[1].axes))
        binding = f"{name}[{ax}{', scale=0.5' if scaled and self.draw(st.booleans()) else ''}]"
        return f"{binding}({a[0]}) as {self.fresh('inst')}", a[1]

    def e_nn(self, depth):
        if not self.nn:
            return None
        a = self.operand(lambda t: t.dtype == "f32" and self.static(t.axes), depth)
        if not a:
            return None
        ax = self.choice(self.static(a[1].axes))
        others = [x for x in self.static(self.sizes) if x not in a[1].axes]
        kind = self.choice(["Linear", "LinearNoBias", "LayerNorm", "RMSNorm", "MLP"])
        inst = self.fresh("nn")
        if kind in ("Linear", "LinearNoBias") and others:
            out = self.choice(others)
            return f"{kind}[{ax}, {out}]({a[0]}) as {inst}", T("f32", tuple(x for x in a[1].axes if x != ax) + (out,))
        if kind == "MLP" and others:
            return f"MLP[{ax}, {self.choice(others)}]({a[0]}) as {inst}", a[1]
        eps = ", eps=1e-6" if self.draw(st.booleans()) else ""
        return f"{self.choice(['LayerNorm', 'RMSNorm'])}[{ax}{eps}]({a[0]}) as {inst}", a[1]

    # -- statements --
    def define_block(self):
        name = f"Blk{len(self.blocks)}"
        scaled = self.draw(st.booleans())
        lines = []
        for _ in range(self.rint(1, 3)):
            kind = self.rint(0, 4)
            tag = self.fresh("b")
            if kind == 0:
                lines += [f"param g{tag}: [z] = ones", f"x = x * g{tag}"]
            elif kind == 1:
                lines.append(f"x = x + {self.choice(FLOAT_FNS)}(x)")
            elif kind == 2:
                lines.append("x = layernorm(x over z)")
            elif kind == 3:
                lines += [f"axis o{tag} ~ z", f"param w{tag}: [z, o{tag}] = normal(0.1)",
                          f"x = x + rename(x @ w{tag}, o{tag} -> z)"]
            else:
                lines.append("x = softmax(x over z) * |z|")
        if scaled:
            lines.append("x = x * scale")
        params = "[z, scale = 1.0]" if scaled else "[z]"
        body = "\n  ".join(lines)
        self.top.append(f"block {name}{params}(x: f32[..., z]) -> f32[..., z] {{\n  {body}\n  return x\n}}")
        self.blocks.append((name, scaled))

    def statement(self):
        self.pending.clear()
        if self.blocks and self.chance(0.15):
            a = self.operand(lambda t: t.dtype == "f32" and self.static(t.axes))
            if a:
                name, _ = self.choice(self.blocks)
                ax = self.choice(self.static(a[1].axes))
                count = self.choice(["2", "1", "3", "depth" if "const depth" in "\n".join(self.top) else "2"])
                target = self.fresh("r")
                if self.draw(st.booleans()):
                    self.body.append(f'{target} = repeat {count} {name}[{ax}]({a[0]}) as "{target}.{{i}}"')
                else:
                    self.body.append(f"{target} = repeat {count} shared {name}[{ax}]({a[0]}) as {target}_s")
                self.env[target] = a[1]
                return
        if self.chance(0.08):
            a = self.operand(lambda t: any(0 < (self.sizes.get(x) or 0) <= 3 for x in t.axes))
            if a:
                ax = self.choice([x for x in a[1].axes if 0 < (self.sizes.get(x) or 0) <= 3])
                names = [self.fresh("u") for _ in range(self.sizes[ax])]
                self.body.append(f"{', '.join(names)} = unstack({a[0]} over {ax})")
                for n in names:
                    self.env[n] = T(a[1].dtype, tuple(x for x in a[1].axes if x != ax))
                return
        e = self.expression()
        if e is None:
            return
        rebind = [n for n in self.env if n not in self.params and n not in self.inputs]
        target = self.choice(rebind) if rebind and self.chance(0.2) else self.fresh()
        self.body.append(f"{target} = {e[0]}")
        self.env[target] = e[1]
        self.pending.clear()

    def program(self) -> str:
        self.declare_axes()
        for _ in range(self.rint(0, 2)):
            self.define_block()
        sig = self.declare_inputs()
        for _ in range(self.rint(1, 7)):
            self.statement()
        made = [n for n in self.env if n not in self.params]
        results = [made[-1]] + ([self.choice(made)] if self.chance(0.3) else [])
        types = []
        for r in results:
            t = self.env[r]
            axes = list(t.axes)
            if self.chance(0.3):
                axes = self.draw(st.permutations(axes))
            types.append(f"{t.dtype}[{', '.join(axes)}]")
        if len(results) == 1 and self.chance(0.7):
            result_sig = types[0]
        else:
            result_sig = "(" + ", ".join(f"out{i}: {t}" for i, t in enumerate(types)) + ")"
        body = "\n".join("  " + line.replace("\n", "\n  ") for line in self.body)
        return ("\n".join(self.top) + f"\n\nmodel Fuzz({', '.join(sig)}) -> {result_sig} {{\n{body}\n"
                f"  return {', '.join(results)}\n}}\n")


# Edits that turn a well-typed program into a nearly well-typed one, so that the checker's
# errors (and the recovery after them) are reached in the middle of real programs.
TEMPLATE_EDITS = [_m_over_axis, _m_replace_name, _m_replace_number, _m_swap_tokens, _m_delete_token, _m_lines]


@st.composite
def template_programs(draw) -> Case:
    text = _Template(draw).program()
    if draw(st.integers(0, 9)) < 2:
        text = draw(st.sampled_from(TEMPLATE_EDITS))(draw, text)
    return Case(text.encode("utf-8"))


# ---- the tests -------------------------------------------------------------------------

# No shrinking: a hang costs WATCHDOG seconds a try, and Hypothesis would try hundreds of
# times. The failure message has the whole file and its traceback, and saves the file for
# tests/fuzz/minimize.py, which shrinks it in seconds.
COMMON = dict(deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))

# Cases per generator: (default suite, slow). The slow total is the 10,000.
# Templates reach lowering and running (about 20 cases/s on one core), mutations mostly stop
# at the checker (about 70/s), and drawing from the grammar is slow in itself (about 20/s).
FAST = {"grammar": 50, "templates": 80, "mutations": 70}
SLOW = {"grammar": 2000, "templates": 4000, "mutations": 4000}

STRATEGIES = {"grammar": grammar_programs, "templates": template_programs, "mutations": mutated_programs}


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """Import onnx, onnxruntime and the backends once, so no case pays for it."""
    assert_robust(Case(b"axis batch, d = 2\nmodel M(x: f32[batch, d]) -> f32[batch, d] {\n"
                       b"  param w: [d] = ones\n  return softmax(x * w over d)\n}\n"))
    yield
    if _BASE is not None:
        shutil.rmtree(_BASE, ignore_errors=True)


def _fuzz_test(kind: str, n: int):
    @settings(max_examples=n, **COMMON)
    @given(STRATEGIES[kind]())
    def run(case: Case) -> None:
        assert_robust(case)
    return run


@pytest.mark.parametrize("kind", list(FAST))
def test_fuzz_fast(kind):
    _fuzz_test(kind, FAST[kind])()


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SLOW))
def test_fuzz_slow(kind):
    _fuzz_test(kind, SLOW[kind])()


def _crashers() -> list[Path]:
    return sorted(CRASHERS.glob("*.arch"))


@pytest.mark.parametrize("path", _crashers(), ids=lambda p: p.name)
def test_crasher_stays_fixed(path):
    """Every file the fuzzer once crashed archc with exits 0 or 1, quickly, without a traceback."""
    assert_robust(Case(path.read_bytes(), dict(LIBRARIES), guard_memory=False))


def test_corpus_is_found():
    """The mutator has the examples, the stdlib, the UI tests and the docs to start from."""
    names = {s.name.split(":")[0] for s in CORPUS}
    assert "examples/gpt2.arch" in names and "docs/language.md" in names
    assert len(CORPUS) > 50
    assert "layers.arch" in LIBRARIES
