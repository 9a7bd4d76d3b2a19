"""What names are bound to while building: weak scalars, poisoned values, bindings, scopes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Union

from archlang.grammar import ast

from .axes import Axis, Size
from .diagnostics import CompileError
from .ir import Value

MAX_CALL_DEPTH = 64
MAX_REPEAT = 10_000
MAX_NODES = 1_000_000  # an unrolled graph past this is a mistake (`repeat 10**9`), not a model
MAX_STATIC_INT = 2 ** 62  # sizes and integer arguments stay well inside int64
DEFAULT_MAX_PARAMS = 2 ** 32  # elements: 16 GiB of f32, the most a 24 GB machine can hold with room to run
INITIALIZERS = {"zeros": 0, "ones": 0, "normal": (1, 2), "uniform": (0, 2), "xavier": 0, "kaiming": 0,
                "constant": 1}


@dataclass
class Weak:
    """A scalar without a dtype yet (a literal, a constant, `|axis|`): it takes its partner's."""
    value: Union[float, int, Size]
    span: Optional[ast.Span]

    @property
    def static(self) -> Optional[float]:
        if isinstance(self.value, Size):
            v = self.value.value
            return None if v is None else v
        return self.value


class Poison:
    """The value of a statement that failed. Using it fails silently, so one mistake gives one
    error and the builder can go on to report the independent ones."""


class Poisoned(CompileError):
    """Raised where a poisoned value is used: nothing new to report."""

    def __init__(self) -> None:
        super().__init__()


class Fatal(CompileError):
    """An error after which going on makes no sense (a budget exceeded): stop building."""


Operand = Union[Value, Weak, Poison]
MAX_ERRORS = 20


@dataclass
class Binding:
    span: Optional[ast.Span]
    kind: str  # "value" | "parameter" | "argument" | "input"
    read: bool = False


@dataclass
class Env:
    """One function's names: its axes (with where each was declared) and its values."""
    axes: dict[str, Axis]
    axis_spans: dict[str, Optional[ast.Span]]
    values: dict[str, Operand]
    function: ast.Function
    bindings: dict[str, Binding] = field(default_factory=dict)


def format_layout(layout: tuple[tuple[str, ...], ...]) -> str:
    items = ["1" if not g else g[0] if len(g) == 1 else "(" + ", ".join(g) + ")" for g in layout]
    return "[" + ", ".join(items) + "]"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
