"""Float32 linear layers by row count: oneDNN's packed GEMM against the extension's panel_linear, interleaved.

    python -m benchmarks.linear_rows [--threads 2] [--repeats 5] [--json bench-results/linear-rows.json]

Shapes are the peer benchmark's held-out Qwen2 (hidden 576, intermediate 1536, vocabulary 24,000): qkv, gate or up,
down and the LM head, at 1-256 rows. Each layer is timed with its weight warm (the same call again and again) and
cold (a 256 MiB buffer written between calls, as in an engine step, where the other layers' weights and the KV
cache pass through the caches in between). Each cell is the median of --repeats rounds, the two kernels
alternating round by round so that load from other processes hits both alike. The engine runs panel_linear up to
``linear.SMALL_M_MAX`` rows; this is the table that threshold comes from.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from appliance.runtime import openmp_env

openmp_env.apply(default="spin")  # before torch loads OpenMP: a benchmark owns its cores (APPLIANCE_OMP_WAIT overrides)

import torch  # noqa: E402

from appliance.runtime import cpu_extension  # noqa: E402

SHAPES = {"qkv 576->960": (960, 576), "gate|up 576->1536": (1536, 576), "down 1536->576": (576, 1536),
          "lm_head 576->24000": (24000, 576)}
ROWS = (1, 8, 16, 32, 64, 96, 128, 256)


def _mean_ms(fn, iters: int, flush: torch.Tensor | None) -> float:
    """Milliseconds per call over iters calls, the flush buffer written (outside the timing) before each."""
    total = 0.0
    for _ in range(iters):
        if flush is not None:
            flush.add_(1.0)
        start = time.perf_counter()
        fn()
        total += time.perf_counter() - start
    return total / iters * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ext = cpu_extension.ops()
    if ext is None or not ext.panel_linear_available():
        print(f"panel_linear is not available here ({cpu_extension.status()}); nothing to compare")
        return 1
    flush = torch.zeros(64 * 2**20)
    rows_out = []
    print(f"{args.threads} threads; ms per call, median of {args.repeats}; speedup = oneDNN / panel_linear")
    print("| layer | rows | oneDNN warm | panel warm | speedup | oneDNN cold | panel cold | speedup |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with torch.inference_mode():
        for name, (out, inp) in SHAPES.items():
            w = torch.randn(out, inp) * inp**-0.5
            onednn = torch.ops.mkldnn._reorder_linear_weight(w)
            panels = ext.pack_panel_weight(w)
            for rows in ROWS:
                x = torch.randn(rows, inp)
                cell = {"layer": name, "rows": rows}
                for state, buf in (("warm", None), ("cold", flush)):
                    a = lambda: torch.ops.mkldnn._linear_pointwise(x, onednn, None, "none", [], "")  # noqa: E731
                    b = lambda: ext.panel_linear(x, panels, out)  # noqa: E731
                    a(), b()
                    ta, tb = [], []
                    for _ in range(args.repeats):  # alternate the two, round by round
                        ta.append(_mean_ms(a, args.iters, buf))
                        tb.append(_mean_ms(b, args.iters, buf))
                    cell[f"onednn_{state}_ms"], cell[f"panel_{state}_ms"] = statistics.median(ta), statistics.median(tb)
                rows_out.append(cell)
                print(f"| {name} | {rows} | {cell['onednn_warm_ms']:.3f} | {cell['panel_warm_ms']:.3f} | "
                      f"{cell['onednn_warm_ms'] / cell['panel_warm_ms']:.2f}x | {cell['onednn_cold_ms']:.3f} | "
                      f"{cell['panel_cold_ms']:.3f} | {cell['onednn_cold_ms'] / cell['panel_cold_ms']:.2f}x |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"threads": args.threads, "cells": rows_out}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
