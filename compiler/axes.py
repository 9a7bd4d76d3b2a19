"""Sizes, axes and tensor types.

A size is an integer, or a polynomial in symbolic sizes (`seq`, `seq - 1`, `2 * batch`)
left open until run time. An axis is a named wire with a size; a tensor type is a dtype
and an ordered tuple of distinct axes (the order is the physical layout; semantics never
depend on it, every operation aligns axes by name).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Optional, Union

DTYPES = {
    "f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64",
    "i64": "int64", "i32": "int32", "i8": "int8", "u8": "uint8", "bool": "bool",
}
FLOAT_DTYPES = {"f32", "f16", "bf16", "f64"}
INT_DTYPES = {"i64", "i32", "i8", "u8"}

Monomial = tuple[str, ...]  # sorted symbol names, () for the constant term


@dataclass(frozen=True)
class Size:
    """An exact size: sum of coefficient * product-of-symbols terms."""
    terms: tuple[tuple[Monomial, Fraction], ...]

    @staticmethod
    def of(value: Union[int, str, "Size"]) -> "Size":
        if isinstance(value, Size):
            return value
        if isinstance(value, int):
            return Size((((), Fraction(value)),)) if value else Size(())
        return Size((((value,), Fraction(1)),))

    @staticmethod
    def _make(d: dict[Monomial, Fraction]) -> "Size":
        return Size(tuple(sorted((m, c) for m, c in d.items() if c != 0)))

    def _dict(self) -> dict[Monomial, Fraction]:
        return dict(self.terms)

    @property
    def is_static(self) -> bool:
        return all(m == () for m, _ in self.terms)

    @property
    def value(self) -> Optional[int]:
        """The integer size when static (and integral), else None."""
        if not self.is_static:
            return None
        c = self._dict().get((), Fraction(0))
        return int(c) if c.denominator == 1 else None

    @property
    def symbols(self) -> set[str]:
        return {s for m, _ in self.terms for s in m}

    def __add__(self, other: "Size") -> "Size":
        d = self._dict()
        for m, c in Size.of(other).terms:
            d[m] = d.get(m, Fraction(0)) + c
        return Size._make(d)

    def __neg__(self) -> "Size":
        return Size(tuple((m, -c) for m, c in self.terms))

    def __sub__(self, other: "Size") -> "Size":
        return self + (-Size.of(other))

    def __mul__(self, other: "Size") -> "Size":
        d: dict[Monomial, Fraction] = {}
        for m1, c1 in self.terms:
            for m2, c2 in Size.of(other).terms:
                m = tuple(sorted(m1 + m2))
                d[m] = d.get(m, Fraction(0)) + c1 * c2
        return Size._make(d)

    def divide(self, other: "Size") -> Optional["Size"]:
        """Exact division; None when it is not exact (or divides by a symbol)."""
        other = Size.of(other)
        if not other.is_static or other.value in (None, 0):
            if self == other and self.terms:
                return Size.of(1)
            return None
        k = other.value
        if self.is_static:
            v = self.value
            return Size.of(v // k) if v is not None and v % k == 0 else None
        return Size(tuple((m, c / k) for m, c in self.terms))

    def floordiv(self, other: "Size") -> Optional["Size"]:
        """Rounded-down division of static sizes; None for symbolic ones (not expressible)."""
        other = Size.of(other)
        if self.is_static and other.is_static and other.value:
            return Size.of(self.value // other.value)
        return None

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for i, (m, c) in enumerate(sorted(self.terms, key=lambda t: (t[0] == (), t[0]))):
            sign = "-" if c < 0 else "+"
            c = abs(c)
            body = "*".join(m)
            if not m:
                text = str(c)
            elif c == 1:
                text = body
            elif c.denominator == 1:
                text = f"{c.numerator}*{body}"
            elif c.numerator == 1:
                text = f"{body}/{c.denominator}"
            else:
                text = f"{c.numerator}*{body}/{c.denominator}"
            if i == 0:
                parts.append(("-" if sign == "-" else "") + text)
            else:
                parts.append(f" {sign} {text}")
        return "".join(parts)


@dataclass(frozen=True)
class Axis:
    name: str
    size: Size

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TensorType:
    dtype: str
    axes: tuple[Axis, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.axes)

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(name)

    def position(self, name: str) -> int:
        return self.names.index(name)

    def with_axes(self, axes: Iterable[Axis]) -> "TensorType":
        return TensorType(self.dtype, tuple(axes))

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.axes)

    def without(self, names: Iterable[str]) -> "TensorType":
        drop = set(names)
        return self.with_axes(a for a in self.axes if a.name not in drop)

    def same_axes(self, other: "TensorType") -> bool:
        return set(self.axes) == set(other.axes)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(self.names)}]"

    def describe(self) -> str:
        """`f32[batch, seq=?, embed=768]`-style, for messages."""
        def one(a: Axis) -> str:
            return a.name if not a.size.is_static else f"{a.name}={a.size}"
        return f"{self.dtype}[{', '.join(one(a) for a in self.axes)}]"


def join_axes(*types: TensorType) -> tuple[Axis, ...]:
    """The union of the axes, in first-seen order (the broadcast result of elementwise ops)."""
    seen: dict[str, Axis] = {}
    for t in types:
        for a in t.axes:
            seen.setdefault(a.name, a)
    return tuple(seen.values())
