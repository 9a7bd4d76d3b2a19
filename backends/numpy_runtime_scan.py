"""NumPy kernels for control flow (numpy only; copied into generated modules)."""
import numpy as np


def scan_loop(step, carried, sequences, whole, axes, shapes, dtypes, reverse=False):
    """Call `step(*states, *slices, *whole)` at each position along `axes` of `sequences`;
    it returns the next states then the per-step results. Returns the last states, then
    each per-step result stacked along a new first axis (position t holds step t's)."""
    n = sequences[0].shape[axes[0]]
    states = list(carried)
    stacked = [np.empty((n,) + tuple(shape), dtype=dtype) for shape, dtype in zip(shapes, dtypes)]
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        out = step(*states, *[np.take(s, t, axis=a) for s, a in zip(sequences, axes)], *whole)
        states = [np.asarray(x) for x in out[:len(states)]]
        for acc, x in zip(stacked, out[len(states):]):
            acc[t] = x
    return tuple(states) + tuple(stacked)
