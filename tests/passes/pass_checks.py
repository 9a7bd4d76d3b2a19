"""What the pass tests share: inputs for a graph, and the check that an optimised graph
computes what the -O0 graph computes, on the NumPy evaluator and on onnxruntime."""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import numpy as np
import onnx
import onnxruntime as ort

from archlang.backends.numpy_codegen import run_graph
from archlang.backends.onnx_export import to_onnx
from archlang.compiler.ir import Graph


def normal_inputs(graph: Graph, sizes: Mapping[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal f32 inputs; a symbolic axis takes its size from `sizes` by name."""
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=[a.size.value if a.size.is_static else sizes[str(a.size)] for a in v.type.axes])
            .astype(np.float32) for n, v in graph.inputs}


def run_onnx(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(inputs))))


def assert_matches(want: Mapping[str, np.ndarray], graph: Graph, params, inputs, model: Optional[onnx.ModelProto] = None,
                   rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """`graph` (and `model`, its ONNX lowering unless given) give `want` on both backends."""
    got = {"numpy": run_graph(graph, params, inputs), "onnx": run_onnx(model or to_onnx(graph, params), inputs)}
    for backend, outputs in got.items():
        assert sorted(outputs) == sorted(want), backend
        for k, ref in want.items():
            assert outputs[k].shape == ref.shape and outputs[k].dtype == ref.dtype, (backend, k)
            np.testing.assert_allclose(outputs[k], ref, rtol=rtol, atol=atol, err_msg=f"{backend} output {k}")


def reference_and_optimised(load: Callable[[], Graph], passes, sizes: Mapping[str, int], seed: int = 3):
    """Two builds of one program: the -O0 reference run on normal inputs, and one optimised by
    `passes` (a list of pass names, or an -O level). Returns (optimised graph, parameters,
    inputs, the reference's outputs)."""
    from archlang.compiler.driver import load_params
    from archlang.compiler.passes import optimize
    reference = load()
    params = load_params(reference, None, seed=seed)
    inputs = normal_inputs(reference, sizes)
    want = run_graph(reference, params, inputs)
    optimised = load()
    if isinstance(passes, int):
        optimize(optimised, passes)
    else:
        optimize(optimised, only=list(passes))
    return optimised, params, inputs, want
