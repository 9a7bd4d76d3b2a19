"""The .arch abstract syntax tree: one frozen dataclass per construct, each with its span."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


# ---- sizes -------------------------------------------------------------------

@dataclass(frozen=True)
class SizeInt:
    value: int
    span: Span


@dataclass(frozen=True)
class SizeName:
    name: str
    span: Span


@dataclass(frozen=True)
class SizeBinary:
    op: str  # + - * / //
    left: "SizeExpr"
    right: "SizeExpr"
    span: Span


SizeExpr = Union[SizeInt, SizeName, SizeBinary]


# ---- declarations ------------------------------------------------------------

@dataclass(frozen=True)
class AxisDef:
    name: str
    kind: str  # "symbolic" | "sized" | "like"
    size: Optional[SizeExpr]
    like: Optional[str]
    span: Span


@dataclass(frozen=True)
class AxisDecl:
    axes: tuple[AxisDef, ...]
    span: Span


@dataclass(frozen=True)
class ConstDecl:
    name: str
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Use:
    path: str
    span: Span


@dataclass(frozen=True)
class TypeAxis:
    name: str  # "..." for the rest of the axes
    span: Span


@dataclass(frozen=True)
class TensorType:
    dtype: str
    axes: tuple[TypeAxis, ...]
    span: Span


@dataclass(frozen=True)
class TypedArg:
    name: str
    type: TensorType
    span: Span


@dataclass(frozen=True)
class ParamInit:
    name: str
    args: tuple["Arg", ...]
    over: Optional["Over"]
    span: Span


@dataclass(frozen=True)
class ParamSource:
    name: str
    layout: Optional[tuple[tuple[str, ...], ...]]  # each item one stored axis: 1 name, or a merged group
    span: Span


@dataclass(frozen=True)
class ParamStmt:
    name: str
    dtype: Optional[str]
    axes: tuple[str, ...]
    init: Optional[ParamInit]
    source: Optional[ParamSource]
    span: Span


@dataclass(frozen=True)
class Assign:
    targets: tuple[str, ...]
    value: Union["Expr", "Repeat", "Scan"]
    span: Span


@dataclass(frozen=True)
class Return:
    values: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class If:
    """`if cond { ... } else { ... }`: one branch's statements run, chosen at compile time."""
    condition: "Expr"
    then: tuple["Stmt", ...]
    otherwise: tuple["Stmt", ...]
    span: Span


Stmt = Union[ParamStmt, AxisDecl, Assign, Return, If]


@dataclass(frozen=True)
class Function:
    """A `block` or the `model`: typed arguments, typed results, a body."""
    kind: str  # "block" | "model"
    name: str
    axis_params: tuple[str, ...]
    const_params: tuple[tuple[str, "Expr"], ...]  # `[eps = 1e-5]`: compile-time numbers with defaults
    args: tuple[TypedArg, ...]
    results: tuple[TypedArg, ...]  # a single unnamed result is named "output"
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Module:
    file: str
    items: tuple[Union[Use, AxisDecl, ConstDecl, Function], ...]


# ---- expressions -------------------------------------------------------------

@dataclass(frozen=True)
class Number:
    value: float | int
    text: str
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class AxisSize:
    axis: str
    span: Span


@dataclass(frozen=True)
class Unary:
    op: str  # neg | not
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str  # add sub mul div pow contract and or lt le gt ge eq ne
    left: "Expr"
    right: "Expr"
    span: Span
    op_span: Optional[Span] = None


@dataclass(frozen=True)
class Index:
    target: str
    index: "Expr"
    span: Span


@dataclass(frozen=True)
class AxisMap:
    source: tuple[str, ...]
    target: tuple[str, ...]
    source_grouped: bool
    target_grouped: bool
    span: Span


@dataclass(frozen=True)
class Over:
    axes: tuple[str, ...]
    target: Optional[tuple[str, ...]]  # `over (h, w) -> (oh, ow)`
    span: Span


@dataclass(frozen=True)
class Tuple:
    """`(2, 1)` as a keyword's value: one item per axis (items may be pairs, per side)."""
    items: tuple[Union["Expr", "Tuple"], ...]
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: str
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class DTypeArg:
    dtype: str
    span: Span


@dataclass(frozen=True)
class StringArg:
    value: str
    span: Span


Arg = Union["Expr", Keyword, AxisMap, DTypeArg, StringArg]


@dataclass(frozen=True)
class Call:
    name: str
    binding: tuple[Union["Expr", "Keyword"], ...]
    args: tuple[Arg, ...]
    over: Optional[Over]
    instance: Optional[str]
    span: Span
    name_span: Optional[Span] = None
    instance_span: Optional[Span] = None  # the `as` name (with its quotes), for errors inside it


@dataclass(frozen=True)
class GroupedOver:
    """`(a @ b over k)`: an `over` clause attached to the expression in parentheses."""
    expr: "Expr"
    over: Over
    span: Span


@dataclass(frozen=True)
class Repeat:
    count: Union[int, str]
    shared: bool
    call: Call
    span: Span


@dataclass(frozen=True)
class Scan:
    """`scan [reverse] axis Block(args)`: the block applied at each position of `axis`."""
    axis: str
    reverse: bool
    call: Call
    span: Span
    axis_span: Span


Expr = Union[Number, Var, AxisSize, Unary, Binary, Index, Call, GroupedOver]


def positional(args: tuple[Arg, ...]) -> list[Arg]:
    return [a for a in args if not isinstance(a, Keyword)]


def keywords(args: tuple[Arg, ...]) -> dict[str, Keyword]:
    return {a.name: a for a in args if isinstance(a, Keyword)}
