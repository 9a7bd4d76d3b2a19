"""NumPy kernels for mixtures of experts (numpy only; copied into generated modules)."""
import numpy as np


def expert_linear(x, w, idx, per_row):
    """Row r of the result is x[r // per_row] @ w[idx[r]].T: x [rows, K], w [experts, N, K]
    (each expert stored [out, in], as torch.nn.Linear), idx the expert of each result row.
    The rows routed to one expert run as one matrix product."""
    experts = w.shape[0]
    bad = idx[(idx < -experts) | (idx >= experts)]
    if bad.size:  # as np.take, rather than dropping the row
        raise IndexError(f"expert index {bad[0]} is out of bounds for {experts} experts")
    idx = np.where(idx < 0, idx + experts, idx)
    out = np.empty((idx.shape[0], w.shape[1]), dtype=np.result_type(x, w))
    for e in range(experts):
        rows = np.flatnonzero(idx == e)
        out[rows] = x[rows // per_row] @ w[e].T
    return out
