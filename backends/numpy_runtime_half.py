"""NumPy kernels for half precision (numpy only; copied into generated modules).

NumPy has no bfloat16, so a bf16 tensor is a float32 array holding bfloat16 values: each op
computes in float32 and `round_bf16` rounds its results. An f16 tensor is a float16 array,
widened to float32 for each op and rounded back (compiler/dtypes.py states the rule).
"""
import numpy as np


def to_f32(x):
    return np.asarray(x, dtype=np.float32)


def to_f16(x):
    with np.errstate(over="ignore"):  # past 65504 is inf: the rounding says so
        return np.asarray(x).astype(np.float16)


def round_bf16(x):
    """The nearest bfloat16 of each float32 (ties to even, as a float32): add half of the 16
    dropped bits' range, plus the lowest kept bit for ties, then drop them. Overflow becomes
    inf, as it should; NaN stays NaN."""
    x = np.require(np.asarray(x, dtype=np.float32), requirements="C")
    bits = x.view(np.uint32)
    kept = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) & np.uint32(0xFFFF0000)
    return np.where(np.isnan(x), x, kept.view(np.float32))
