"""Standard-library blocks against the torch modules they are named after.

`check_block(source, module, inputs, tmp_path)` does what a torch user does: the module with
random weights (every parameter perturbed, so a unit weight or zero bias that was not bound
would show), its `state_dict()` saved as it is with safetensors, a model in `source` that
calls the block (`as ""`, so the block's parameters carry torch's names unprefixed) compiled
bound to that file at -O2, and onnxruntime and the NumPy reference run on the inputs torch
ran. Every output must be within TOL (max abs, fp32) of torch's.

torch is imported only inside the functions; each test module `importorskip`s it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from parity_helpers import TOL, max_abs_errors, run_onnx


def randomize(module: Any, seed: int = 0, scale: float = 0.1) -> Any:
    """The module in eval mode, each parameter moved off its initial value by seeded noise."""
    import torch
    torch.manual_seed(seed)
    module = module.eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


def check_block(source: str, module: Any, inputs: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray],
                tmp_path: Path, sets: Mapping[str, str] | None = None) -> dict[str, float]:
    """Compile `source` bound to `module.state_dict()`; both backends must give `want` (by
    output name) to TOL. Returns the max abs errors, keyed `backend:output`."""
    from safetensors.torch import save_file

    from archlang.backends.numpy_codegen import run_graph
    from archlang.backends.onnx_export import compile_to_file
    from archlang.compiler.diagnostics import SourceCache
    from archlang.compiler.driver import load_graph, load_params
    from archlang.compiler.passes import optimize

    weights = tmp_path / "weights.safetensors"
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    if state:
        save_file(state, str(weights))
    path = tmp_path / "model.arch"
    path.write_text(source)
    graph = load_graph(str(path), SourceCache(), dict(sets or {}))
    optimize(graph, 2)
    params = load_params(graph, str(weights) if state else None, seed=0)
    onnx_path = tmp_path / "model.onnx"
    compile_to_file(graph, params, str(onnx_path))
    got = {"onnx": run_onnx(onnx_path, inputs), "numpy": run_graph(graph, params, dict(inputs))}
    errors = max_abs_errors(got, want)
    print(" ".join(f"{k}={v:.1e}" for k, v in errors.items()))
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"max abs difference from torch over {TOL}: {bad}"
    return errors


def torch_outputs(module: Any, *args: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, ...]:
    """The module's outputs on NumPy inputs, as float64 arrays (a tuple even for one; a None
    output, as MultiheadAttention's weights with need_weights=False, left out; nested tuples
    flattened)."""
    import torch
    with torch.no_grad():
        out = module(*(torch.from_numpy(a) for a in args), **kwargs)
    return tuple(o.double().numpy() for o in _flat(out) if o is not None)


def _flat(out: Any) -> list[Any]:
    """Nested tuples of outputs, flattened (LSTM's `output, (h_n, c_n)`)."""
    return [leaf for item in out for leaf in _flat(item)] if isinstance(out, tuple) else [out]
