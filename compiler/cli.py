"""`archc`: the command-line driver.

Exit codes: 0 ok, 1 an error in the user's input (rendered as `file:line:col: error: …`),
2 a usage error.
"""
from __future__ import annotations

import argparse
import os
import math
import sys
import time
from typing import Optional

from .diagnostics import CompileError, Diagnostic, SourceCache, render
from .driver import UsageError
from .dtypes import DTYPE_CHOICES
from .files import write_bytes


def _common(p: argparse.ArgumentParser, weights: bool = True) -> None:
    p.add_argument("file", help="the .arch file")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override an axis size or constant declared in the file (repeatable)")
    p.add_argument("--max-params", type=int, default=None, metavar="N",
                   help="refuse models with more than N parameter elements, or any value larger "
                        "(default 2**32), before allocating anything")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="f32",
                   help="read every f32 the model names (inputs, outputs, parameters, casts) as this dtype; "
                        "f16 and bf16 ops compute in f32 and round their results (default f32)")
    if weights:
        p.add_argument("--weights", metavar="FILE", help=".safetensors or .npz file, bound by parameter name")
        p.add_argument("--seed", type=int, default=0, help="seed for parameter initializers (default 0)")


def _passes(p: argparse.ArgumentParser, default_level: int = 2) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("-O", dest="level", type=int, choices=[0, 1, 2], default=default_level,
                   help=f"0: the IR as written; 1: clean-ups; 2: clean-ups and fusions (default {default_level})")
    g.add_argument("--passes", metavar="A,B", help="run exactly these passes, in this order (see `archc passes`)")
    g.add_argument("--disable-pass", action="append", default=[], metavar="NAME", help="skip a pass (repeatable)")
    g.add_argument("--explain", action="store_true",
                   help="list each rule that fired, where, and why each other candidate was rejected")


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", choices=["ort", "portable"], default="ort",
                   help="ort: fused ops may lower to onnxruntime's com.microsoft ops where faster (default); "
                        "portable: standard ONNX ops only")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archc", description="Compile .arch model descriptions to ONNX and NumPy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="parse and type-check only", description="Parse and type-check a .arch file.")
    _common(p, weights=False)

    p = sub.add_parser("compile", help="compile to an ONNX model", description="Compile a .arch file to ONNX.")
    _common(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the newest onnxruntime runs)")
    p.add_argument("--no-check", action="store_true", help="skip onnx.checker's full check of the graph")
    _target(p)
    p.add_argument("--weights-link", action="store_true",
                   help="refer to the --weights .safetensors tensors in place (hard-linked beside the output) "
                        "instead of copying them into the model")
    _passes(p)

    p = sub.add_parser("run", help="run the model on inputs", description="Run a model with the NumPy or ONNX backend.")
    _common(p)
    p.add_argument("--backend", choices=["numpy", "onnx"], default="numpy")
    p.add_argument("--inputs", metavar="IN.npz", help="inputs by the model's input names (random when absent)")
    p.add_argument("--output", required=True, metavar="OUT.npz", help="outputs are saved by output name")
    p.add_argument("--opset", type=int, default=None)
    _target(p)
    _passes(p)

    p = sub.add_parser("emit-numpy", help="write the standalone NumPy reference module",
                       description="Write a standalone Python module (numpy its only import) computing the model.")
    _common(p, weights=False)
    p.add_argument("-o", "--output", required=True, metavar="model.py")
    _passes(p)

    p = sub.add_parser("ir", help="print the typed IR", description="Print the typed IR of a .arch file.")
    _common(p, weights=False)
    _passes(p, default_level=0)
    p.add_argument("--print-after", action="append", default=[], metavar="PASS",
                   help="print the IR after each run of PASS that changed it (repeatable)")

    sub.add_parser("passes", help="list the optimisation passes", description="List the passes of each -O level.")

    p = sub.add_parser("render", help="draw an architecture diagram (.svg, .html, .dot, .mmd)",
                       description="Draw the model's architecture: SVG drawn by archc (alone, or in an HTML page "
                                   "with search and closable blocks), or DOT / Mermaid text.")
    _common(p, weights=False)
    p.add_argument("-o", "--output", required=True, metavar="OUT.svg|OUT.html|OUT.dot|OUT.mmd",
                   help="the format follows the extension")
    p.add_argument("--depth", type=int, default=1, metavar="N",
                   help="block levels drawn open (a scan's body is one); deeper blocks are one box each "
                        "(default 1)")
    p.add_argument("--expand", action="append", default=[], metavar="BLOCK",
                   help="open this block (name or instance path, `scan seq` for a scan) at any depth "
                        "(repeatable)")
    p.add_argument("--no-sizes", action="store_true", help="label wires with axis names only")
    p.add_argument("--unroll", action="store_true", help="draw every copy of a repeat instead of one marked × N")
    _passes(p, default_level=0)

    p = sub.add_parser("summary", help="parameters, multiply-accumulates and outputs per block",
                       description="A table per block: parameters, multiply-accumulates per inference (at the sizes "
                                   "--set gives; a formula in the sizes left open) and output types.")
    _common(p, weights=False)
    p.add_argument("--depth", type=int, default=2, metavar="N", help="block levels listed (default 2)")
    _passes(p, default_level=0)

    p = sub.add_parser("sweep", help="compile every variant of a grid of sizes and measure each",
                       description="Compile each combination of the --grid values and print its parameters, "
                                   "multiply-accumulates, peak activation memory, compile time and onnxruntime "
                                   "latency; variants the compiler refuses are reported and the sweep goes on.")
    _common(p, weights=False)
    p.add_argument("--grid", nargs="+", action="extend", required=True, metavar="NAME=V1,V2",
                   help="values to try for an axis size or constant (several names: every combination)")
    p.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    p.add_argument("--runs", type=int, default=10, metavar="N",
                   help="onnxruntime runs per variant, the median reported (0: no latency; default 10)")
    _passes(p)
    return parser


def _load(args, sources, after=None):
    """Parse and type-check `args.file`, then optimise it as the -O options say; warnings go to
    stderr and never change the exit code."""
    from .driver import load_graph, parse_sets
    graph = load_graph(args.file, sources, parse_sets(args.set), max_params=_budget(args), float_dtype=args.dtype)
    for w in graph.warnings:
        print(render(w, sources), file=sys.stderr)
    if hasattr(args, "level"):
        from .driver import optimize_graph
        explain = optimize_graph(graph, args.level, args.passes, args.disable_pass, args.explain, after)
        if args.explain:
            sys.stderr.write(explain)
    return graph


def _budget(args) -> int:
    from .build import DEFAULT_MAX_PARAMS
    return args.max_params if args.max_params is not None else DEFAULT_MAX_PARAMS


def _opset(requested: Optional[int]) -> int:
    from archlang.backends.onnx_export import DEFAULT_OPSET, MIN_OPSET
    import onnx
    if requested is None:
        return DEFAULT_OPSET
    if not MIN_OPSET <= requested <= onnx.defs.onnx_opset_version():
        raise CompileError(Diagnostic(f"--opset {requested} is not supported; use {MIN_OPSET} to "
                                      f"{onnx.defs.onnx_opset_version()}", None))
    return requested


def cmd_check(args, sources) -> int:
    graph = _load(args, sources)
    n_params = sum(int(math.prod(a.size.value for a in p.type.axes)) for p in graph.params.values())
    print(f"{args.file}: ok: model `{graph.name}`, {len(graph.nodes)} nodes, {n_params:,} parameters")
    return 0


def cmd_ir(args, sources) -> int:
    from .ir import print_graph
    watched = set(args.print_after)
    if watched:
        from .passes import PASSES
        unknown = watched - set(PASSES)
        if unknown:
            raise UsageError(f"--print-after: no pass named {', '.join(sorted(unknown))}; passes are {', '.join(PASSES)}")

    def after(name, graph):
        if name in watched:
            sys.stdout.write(f"// after {name}\n" + print_graph(graph))
    graph = _load(args, sources, after)
    if not watched:
        sys.stdout.write(print_graph(graph))
    return 0


def cmd_passes(args, sources) -> int:
    from .passes import LEVELS, PASSES, pipeline
    for name in dict.fromkeys(LEVELS[2] + list(PASSES)):  # in the order -O2 runs them
        levels = ", ".join(f"-O{k}" for k, names in LEVELS.items() if name in names)
        print(f"{name:34} {pipeline(only=[name])[0].summary}  ({levels})")
    return 0


def cmd_emit_numpy(args, sources) -> int:
    from archlang.backends.numpy_codegen import emit_module
    graph = _load(args, sources)
    write_bytes(args.output, emit_module(graph, args.file).encode())
    return 0


def cmd_compile(args, sources) -> int:
    from archlang.backends.onnx_export import compile_to_file
    from .driver import load_params
    from .weights_fold import fold_parameters  # weight arithmetic the passes wrote (fold-batchnorm), computed now
    start = time.perf_counter()
    opset = _opset(args.opset)
    if args.weights_link and not args.weights:
        raise UsageError("--weights-link refers to the tensors of --weights W.safetensors; give --weights")
    graph = _load(args, sources)
    if not args.weights_link:
        params = fold_parameters(graph, load_params(graph, args.weights, args.seed))
        model = compile_to_file(graph, params, args.output, opset, check=not args.no_check, target=args.target)
    else:
        from archlang.backends.onnx_file import linking
        from .weights import load_weights
        params = fold_parameters(graph, load_weights(graph, args.weights, link=True), slices=False)
        with linking(args.weights) as link:
            model = compile_to_file(graph, params, args.output, opset, check=not args.no_check, target=args.target)
        print(f"weights: {link.linked + link.transposed} tensors linked in {os.path.basename(args.weights)} "
              f"({link.transposed} through a Transpose), {link.copied} copied", file=sys.stderr)
        if link.hard_link:
            print(f"archc: warning: {args.weights} is hard-linked as {link.hard_link}; onnxruntime loads the model, but "
                  "onnx.load and onnx.checker refuse external data with several hard links: for a model they "
                  "accept, write the output into the weights' folder", file=sys.stderr)
    print(f"wrote {args.output} ({len(model.graph.node)} nodes, opset {opset}) in {time.perf_counter() - start:.2f} s",
          file=sys.stderr)
    return 0


def cmd_run(args, sources) -> int:
    import io
    import numpy as np
    from .driver import load_params
    graph = _load(args, sources)
    params = load_params(graph, args.weights, args.seed)
    if args.inputs:
        try:
            with np.load(args.inputs, allow_pickle=False) as z:
                inputs = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise CompileError(Diagnostic(f"inputs file not found: {args.inputs}", None)) from None
        except Exception as e:
            import zipfile
            why = "not an .npz archive" if isinstance(e, (zipfile.BadZipFile, ValueError)) else str(e)
            raise CompileError(Diagnostic(f"cannot read inputs {args.inputs}: {why}", None)) from None
        unknown = set(inputs) - {n for n, _ in graph.inputs}
        if unknown:
            raise CompileError(Diagnostic(f"{args.inputs}: no model input named {', '.join(sorted(unknown))}; "
                                          f"inputs are {', '.join(n for n, _ in graph.inputs)}", None))
    else:
        from .driver import random_inputs
        inputs = random_inputs(graph, args.seed)
    from archlang.backends.numpy_codegen import check_inputs
    check_inputs(graph, inputs)
    if args.backend == "numpy":
        from archlang.backends.numpy_codegen import run_graph
        outputs = run_graph(graph, params, inputs)
    else:
        import onnxruntime as ort
        from archlang.backends.onnx_export import to_onnx
        from archlang.backends.onnx_half_io import float32_io
        model = float32_io(to_onnx(graph, params, _opset(args.opset), args.target))  # NumPy has no bfloat16
        from archlang.backends.numpy_codegen import RunError
        try:
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as e:  # a kernel onnxruntime lacks (f64 Erf, ...): the model is valid, the runtime is not
            raise RunError(f"onnxruntime cannot run this model: {str(e).splitlines()[0]}") from None
        names = [n for n, _ in graph.outputs]
        feeds = {n: inputs[n] for n, _ in graph.inputs}
        try:
            outputs = dict(zip(names, session.run(names, feeds)))
        except Exception as e:  # onnxruntime's own errors (bad index values, ...) are about the inputs
            from archlang.backends.numpy_codegen import RunError
            raise RunError(f"onnxruntime failed: {str(e).splitlines()[0]}") from None
    buf = io.BytesIO()
    np.savez(buf, **outputs)
    write_bytes(args.output, buf.getvalue())
    for n, a in outputs.items():
        print(f"{n}: {a.dtype}{list(a.shape)}", file=sys.stderr)
    return 0


def cmd_render(args, sources) -> int:
    from archlang.backends.render import FORMATS, diagram_format, render
    if diagram_format(args.output) is None:
        raise UsageError(f"cannot tell the diagram format of {args.output}: use {', '.join(sorted(FORMATS))}")
    if args.depth < 0:
        raise UsageError("--depth must be 0 or more")
    graph = _load(args, sources)
    render(graph, args.output, args.depth, args.expand, not args.no_sizes, not args.unroll)
    return 0


def cmd_summary(args, sources) -> int:
    from .summary import format_summary, summarize
    if args.depth < 0:
        raise UsageError("--depth must be 0 or more")
    sys.stdout.write(format_summary(summarize(_load(args, sources), args.depth)))
    return 0


def cmd_sweep(args, sources) -> int:
    from .driver import parse_sets
    from .sweep import format_table, parse_grid, sweep, to_csv
    grid = parse_grid(args.grid)
    if args.runs < 0:
        raise UsageError("--runs must be 0 or more")

    def progress(done: int, total: int, sets: dict) -> None:
        where = " ".join(f"{k}={v}" for k, v in sets.items())
        line = f"[{done}/{total}] " + (f"compiling {where}" if done < total else "done")
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line + ("\n" if done == total else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    results = sweep(args.file, grid, parse_sets(args.set), args.level, args.runs, progress,
                    args.passes, args.disable_pass)
    sys.stdout.write(format_table(grid, results))
    if args.csv:
        write_bytes(args.csv, to_csv(grid, results).encode())
    return 1 if any(v.error for v in results) else 0


COMMANDS = {"check": cmd_check, "compile": cmd_compile, "run": cmd_run, "emit-numpy": cmd_emit_numpy, "ir": cmd_ir,
            "passes": cmd_passes, "render": cmd_render,
            "summary": cmd_summary, "sweep": cmd_sweep}


def main(argv: Optional[list[str]] = None) -> int:
    args = make_parser().parse_args(argv)
    sources = SourceCache()
    try:
        return COMMANDS[args.command](args, sources)
    except CompileError as e:
        for d in e.diagnostics:
            print(render(d, sources) if d.span else f"archc: {render(d, sources)}", file=sys.stderr)
        return 1
    except RecursionError:
        print("archc: error: the program nests too deeply to compile (a very long expression or chain of "
              "blocks); split it with intermediate names", file=sys.stderr)
        return 1
    except UsageError as e:  # malformed option values (for example --set)
        print(f"archc: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from archlang.backends.numpy_codegen import RunError
        if isinstance(e, RunError):
            print(f"archc: error: {e}", file=sys.stderr)
            return 1
        if os.environ.get("ARCHC_DEBUG"):
            raise
        print(f"archc: internal error: {e.__class__.__name__}: {e}\n"
              "this is a bug in archc; run with ARCHC_DEBUG=1 for details", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
