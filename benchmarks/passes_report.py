"""The tables benchmarks/passes.py prints (Markdown): compile times, onnxruntime latency with
the ratios against torch's export, and graph counts."""
from __future__ import annotations

VARIANTS = ("archc -O0", "archc -O2", "torch export", "torch + ORT optimizer")


def fmt_s(x) -> str:
    return x if isinstance(x, str) else f"{x:.2f} s"


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) else "n/a"


def print_tables(results: dict, args, seq: int, image: int) -> None:
    print(f"\n### Compile time (median of {args.runs}; ratio = torch export call / archc)\n")
    print("| model | archc -O2 (process) | its CPU (user + sys) | archc -O2 (in-process) | torch.onnx.export call "
          "| torch imports + build | torch / archc process | torch / archc in-process |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        c = r["compile"]
        imp = c.get("torch imports"), c.get("torch model build")
        imp = f"{imp[0]:.1f} s + {imp[1]:.1f} s" if None not in imp else "n/a"
        t = c.get("torch export call", "n/a")
        print(f"| {name} | {fmt_s(c.get('archc process', 'n/a'))} | {fmt_s(c.get('archc process cpu', 'n/a'))} "
              f"| {fmt_s(c.get('archc in-process', 'n/a'))} "
              f"| {fmt_s(t)} | {imp} | {ratio(t, c.get('archc process'))} | {ratio(t, c.get('archc in-process'))} |")

    bs = args.batches
    print(f"\n### onnxruntime latency, ms (median of {args.iters} after {args.warmup} warm-up; CPU, "
          f"ORT_ENABLE_ALL, {args.threads} intra-op threads; sequence {seq} / {image}x{image} images)\n")
    print("| model | graph | " + " | ".join(f"batch {b}" for b in bs) + " | max abs diff vs torch |")
    print("|---|---|" + "---|" * len(bs) + "---|")
    for name, r in results.items():
        for v in VARIANTS:
            lat = r["lat"].get(v, "n/a")
            if isinstance(lat, str):
                print(f"| {name} | {v} | " + " | ".join([lat] + [""] * (len(bs) - 1)) + " |  |")
                continue
            diffs = " / ".join(f"{r['diff'][v][b]:.1e}" for b in bs)
            print(f"| {name} | {v} | " + " | ".join(f"{lat[b] * 1e3:.1f}" for b in bs) + f" | {diffs} |")
        o2 = r["lat"].get("archc -O2")
        for v in ("torch export", "torch + ORT optimizer"):
            other = r["lat"].get(v)
            cells = [ratio(o2[b], other[b]) if isinstance(o2, dict) and isinstance(other, dict) else "n/a"
                     for b in bs]
            print(f"| {name} | **archc -O2 / {v}** | " + " | ".join(cells) + " | (target <= 0.9) |")
        for note in r["notes"]:
            print(f"\n{name}: {note}")

    print("\n### Graph counts: each file, and the graph onnxruntime runs (ORT_ENABLE_ALL dump)\n")
    print("| model | graph | nodes | Transpose | fused | fused ops | ORT nodes | ORT Transpose | ORT fused "
          "| ORT fused ops |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for v in VARIANTS:
            c = r["counts"].get(v, "n/a")
            if isinstance(c, str):
                print(f"| {name} | {v} | {c} |  |  |  |  |  |  |  |")
                continue
            cells = [f"{d} |  |  | " if isinstance(d, str) else f"{d['nodes']}" + (
                     f" (+{d['functions']} functions)" if d["functions"] else "")
                     + f" | {d['Transpose']} | {d['fused']} | {d['hist']}" for d in c]
            print(f"| {name} | {v} | " + " | ".join(cells) + " |")
