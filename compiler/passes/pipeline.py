"""The optimisation pipeline: which passes run, in which order, at each -O level.

-O0 runs nothing (the IR as written). -O1 cleans up: identities, common subexpressions,
constant folding, dead code. -O2 (the default) also fuses patterns into single registry
ops (attention, ...) that the backends lower to their fastest forms, then cleans up again.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..ir import Graph
from .assign_layouts import AssignLayouts
from .eliminate_common_subexpressions import EliminateCommonSubexpressions
from .eliminate_dead_nodes import EliminateDeadNodes
from .fold_constants import FoldConstants
from .manager import Pass, PassContext, Report, run_passes
from .rewrite_pass import RewritePass
from .rules import algebra, attention, batchnorm, expert_dispatch, gated_mlp, linear, residual_norm, rotary
from .rules import unstack_linear

PASSES: dict[str, Callable[[], Pass]] = {
    "simplify-algebra": lambda: RewritePass("simplify-algebra", "x*1, x+0, rename and transpose chains",
                                            algebra.RULES),
    "eliminate-common-subexpressions": EliminateCommonSubexpressions,
    "fold-constants": FoldConstants,
    "eliminate-dead-nodes": EliminateDeadNodes,
    "assign-layouts": AssignLayouts,
    "fuse-attention": lambda: RewritePass("fuse-attention", "scores, scale, biases, causal mask, softmax and "
                                          "values -> one attention op", attention.RULES),
    "fuse-linear": lambda: RewritePass("fuse-linear", "x @ w + b with parameters w, b -> one linear op",
                                       linear.RULES),
    "unstack-linear": lambda: RewritePass("unstack-linear", "unstack(x @ w + b over a), a an output axis of w -> "
                                          "one linear per slice (no Split of the activations)", unstack_linear.RULES),
    "fold-batchnorm": lambda: RewritePass("fold-batchnorm", "batchnorm(conv(x, w)) -> conv(x, w * s) + shift "
                                          "(inference)", batchnorm.RULES),
    "fuse-residual-norm": lambda: RewritePass("fuse-residual-norm", "norm(a + b), with a + b also used on -> one "
                                              "add_layernorm / add_rmsnorm op of two results", residual_norm.RULES),
    "fuse-gated-mlp": lambda: RewritePass("fuse-gated-mlp", "act(x @ w_gate) * (x @ w_up) -> one gated_linear op",
                                          gated_mlp.RULES),
    "dispatch-experts": lambda: RewritePass("dispatch-experts", "x @ gather(w, idx over expert) -> one "
                                            "expert_linear op (tokens grouped by expert); a routed expert MLP "
                                            "-> one expert_mlp op", expert_dispatch.RULES),
    "fuse-rotary": lambda: RewritePass("fuse-rotary", "stack(x1*cos - x2*sin, x2*cos + x1*sin) of unstacked halves "
                                       "-> one rotary op", rotary.RULES),
}

CLEANUP = ["simplify-algebra", "eliminate-common-subexpressions", "fold-constants", "eliminate-dead-nodes"]
# Fusions run before constant folding, which would turn a fixed-size causal mask into an
# opaque table the attention rule can no longer read as "causal".
FUSIONS: list[str] = ["fuse-attention", "fuse-linear", "fold-batchnorm", "fuse-residual-norm",
                      "fuse-gated-mlp", "dispatch-experts"]
# fuse-rotary runs after assign-layouts: its op keeps x's order, so the transpose the rewrite
# adds back to `stack`'s pair-first order meets the one assign-layouts put after the stack,
# and simplify-algebra cancels the two. (Before it, assign-layouts, which leaves transposes
# alone, would hand attention pair-first queries.) unstack-linear runs after it: the halves
# rotary unstacks from a projection must stay one projection.
LATE_FUSIONS: list[str] = ["fuse-rotary", "unstack-linear"]
LEVELS = {0: [], 1: CLEANUP,
          2: ["simplify-algebra", "eliminate-common-subexpressions"] + FUSIONS + ["assign-layouts"] + LATE_FUSIONS
          + CLEANUP}


class UnknownPass(ValueError):
    pass


def pipeline(level: int = 2, only: Optional[Sequence[str]] = None, disable: Sequence[str] = ()) -> list[Pass]:
    """The passes of `level`, or exactly `only` in that order; minus those in `disable`."""
    for name in list(only or ()) + list(disable):
        if name not in PASSES:
            raise UnknownPass(f"no pass named `{name}`; passes are {', '.join(PASSES)}")
    names = list(only) if only is not None else LEVELS[level]
    return [PASSES[n]() for n in names if n not in disable]


def optimize(graph: Graph, level: int = 2, only: Optional[Sequence[str]] = None, disable: Sequence[str] = (),
             ctx: Optional[PassContext] = None, after: Optional[Callable[[str, Graph], None]] = None) -> Report:
    """Optimise `graph` in place; returns what each pass did."""
    return run_passes(graph, pipeline(level, only, disable), ctx, after)
