"""Positional plans for named-axis alignment, shared by every backend."""
from __future__ import annotations

from typing import Optional, Sequence


def alignment(src: Sequence[str], dst: Sequence[str]) -> tuple[Optional[list[int]], tuple[int, ...]]:
    """How to make a tensor with axes `src` broadcast against the layout `dst`.

    Returns a permutation (None when the order already agrees) that sorts `src` into
    `dst` order, then the positions where size-1 axes must be inserted. Leading missing
    axes need no insert: broadcasting aligns from the right.
    """
    missing_src = [a for a in src if a not in dst]
    if missing_src:
        raise ValueError(f"axes {missing_src} are not in the target layout {list(dst)}")
    order = sorted(range(len(src)), key=lambda i: list(dst).index(src[i]))
    perm = None if order == list(range(len(src))) else order
    present = [a in src for a in dst]
    if not any(present):
        return perm, ()
    first = present.index(True)
    expand = tuple(i - first for i in range(first, len(dst)) if not present[i])
    return perm, expand
