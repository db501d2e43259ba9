"""Run each NKI kernel on the simulator at model-like shapes and report accuracy against its PyTorch reference and
peak on-chip memory (SBUF bytes per partition, PSUM banks) as measured by the project's NumPy simulator.

    python scripts/nki_kernels_report.py [--out bench-results/nki_kernels_report.json] [--full]

--full adds a Llama-3-8B-sized SwiGLU MLP (H=4096, I=14336; slow on the simulator). Figures come from the simulator
only; nothing here has run on Neuron hardware. Wall time is the simulator's, not a kernel latency.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nki_kernels  # noqa: E402
from nki_kernels import paged_decode_attention, rms_norm, rotary_embedding, swiglu_mlp  # noqa: E402
from nki_kernels.simulator import nki as simulator_nki  # noqa: E402

DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(DTYPES[dtype])


def _torch(a):
    if a.dtype == DTYPES["bfloat16"]:
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(a)


def _cases(rng, dtype, full):
    t, h = 256, 4096
    yield "rms_norm", f"T={t} H={h}", rms_norm, (_rand(rng, (t, h), dtype), _rand(rng, (h,), dtype)), {"eps": 1e-5}

    t, hq, hkv, d = 128, 32, 8, 128
    angles = rng.uniform(0, 100, (t, d // 2))
    cos = np.concatenate([np.cos(angles)] * 2, -1).astype(np.float32).astype(DTYPES[dtype])
    sin = np.concatenate([np.sin(angles)] * 2, -1).astype(np.float32).astype(DTYPES[dtype])
    args = (_rand(rng, (t, hq, d), dtype), _rand(rng, (t, hkv, d), dtype), cos, sin)
    yield "rotary_embedding", f"T={t} Hq={hq} Hkv={hkv} D={d}", rotary_embedding, args, {}

    for t, h, i in [(16, 1024, 2816)] + ([(128, 4096, 14336)] if full else []):
        args = (_rand(rng, (t, h), dtype), _rand(rng, (i, h), dtype, h**-0.5), _rand(rng, (i, h), dtype, h**-0.5),
                _rand(rng, (h, i), dtype, i**-0.5))
        yield "swiglu_mlp", f"T={t} H={h} I={i}", swiglu_mlp, args, {}

    b, hq, hkv, d, bs = 8, 32, 8, 128, 16
    lens = rng.integers(1, 1025, size=b).astype(np.int32)
    per_seq = (lens + bs - 1) // bs
    num_blocks = int(per_seq.sum()) + 4
    owners = rng.permutation(num_blocks)
    tables = np.full((b, int(per_seq.max())), -1, dtype=np.int32)
    start = 0
    for s, n in enumerate(per_seq):
        tables[s, :n] = owners[start:start + n]
        start += n
    args = (_rand(rng, (b, hq, d), dtype), _rand(rng, (num_blocks, bs, hkv, d), dtype),
            _rand(rng, (num_blocks, bs, hkv, d), dtype), tables, lens)
    shape = f"B={b} Hq={hq} Hkv={hkv} D={d} block={bs} ctx={lens.min()}..{lens.max()}"
    yield "paged_decode_attention", shape, paged_decode_attention, args, {"scale": d**-0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/nki_kernels_report.json")
    parser.add_argument("--full", action="store_true")
    options = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = []
    for dtype in DTYPES:
        for name, shape, op, args, kwargs in _cases(rng, dtype, options.full):
            start = time.perf_counter()
            got = nki_kernels.simulate(op.kernel, *args, **kwargs)
            elapsed = time.perf_counter() - start
            memory = simulator_nki.last_memory_report
            expected = op.reference(*map(_torch, args), *kwargs.values())
            got = got if isinstance(got, tuple) else (got,)
            expected = expected if isinstance(expected, tuple) else (expected,)
            abs_err = max(float(np.abs(g.astype(np.float32) - e.float().numpy()).max()) for g, e in zip(got, expected))
            peak = max(float(e.float().abs().max()) for e in expected)
            rows.append({
                "op": name, "dtype": dtype, "shape": shape, "max_abs_err": abs_err, "max_abs_ref": peak,
                "sbuf_peak_bytes_per_partition": memory.peak_sbuf_bytes_per_partition if memory else None,
                "psum_peak_banks": memory.peak_psum_banks if memory else None, "simulator_seconds": round(elapsed, 2),
            })
            r = rows[-1]
            print(f"{name:24s} {dtype:9s} {shape:52s} max|err| {abs_err:9.2e} (max|ref| {peak:7.2f})  "
                  f"SBUF {r['sbuf_peak_bytes_per_partition']:>6} B/partition  PSUM {r['psum_peak_banks']} banks  "
                  f"sim {elapsed:5.1f}s", flush=True)

    report = {"simulator": "NEURON_SDK" if nki_kernels.NEURON_SDK else "project NumPy simulator",
              "hardware_run": False, "results": rows}
    Path(options.out).parent.mkdir(parents=True, exist_ok=True)
    Path(options.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
