"""Stall benchmark: inter-token latency of running streams while long prompts keep arriving.

    python -m appliance.runtime.bench --stall [--out bench-results/stall.json] [--quick]
    python -m appliance.runtime.bench_stall ...                                  (the same)

32 streams, each a 2,048-token prompt and 512 output tokens (greedy, EOS ignored), arriving one every --interval-s
seconds, so new prompts prefill while earlier streams decode; 512 tokens keep the first stream decoding until the
last has arrived on a 2-core machine that decodes them at ~50 ms each (with 128, a 2-core Xeon finished each stream
in about 6 s and never had more than 6 at once; the report says when the streams never all ran together). The
engine's EngineCore is stepped directly (no HTTP); a request is added once the clock passes its arrival time.
Reports ITL p50/p99/max over every stream's tokens, TTFT (from each request's arrival) and the step times, against
the target ITL p99 <= 3x p50. The model is the bench's ~55M Llama (bench.py) with 4,096 positions (max_model_len:
the prompt plus twice the output). --engine-arg step_token_budget=2048 shows the old behaviour (a decode waits
behind a whole 2,048-token chunk).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from appliance.runtime import openmp_env  # noqa: E402

openmp_env.apply()  # before torch loads OpenMP; see appliance/runtime/openmp_env.py

from appliance.runtime.bench_workload import BENCH_MODEL, percentile, publish_report  # noqa: E402

ITL_P99_OVER_P50_TARGET = 3.0
STALL_MODEL: dict[str, Any] = {**BENCH_MODEL, "max_position_embeddings": 4096}
QUICK_MODEL: dict[str, Any] = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)


def ensure_checkpoint(cache_dir: Path, quick: bool) -> Path:
    from appliance.runtime.tiny_models import make_checkpoint

    path = cache_dir / ("stall-quick" if quick else "llama-55m-4k-float32")
    if not (path / "config.json").exists() or not list(path.glob("*.safetensors")):
        make_checkpoint(path, "llama", dtype="float32", **(QUICK_MODEL if quick else STALL_MODEL))
    return path


def make_streams(n: int, prompt_len: int, vocab: int, seed: int) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    return [[rng.randrange(4, vocab) for _ in range(prompt_len)] for _ in range(n)]


def run(model_dir: Path, prompts: list[list[int]], output_len: int, interval_s: float,
        engine_args: dict[str, Any]) -> dict[str, Any]:
    from appliance.runtime.config import EngineConfig
    from appliance.runtime.engine import EngineCore
    from appliance.runtime.sampling_params import SamplingParams

    core = EngineCore(EngineConfig(model=str(model_dir), **engine_args))
    core.add_request("warmup", prompts[0][:32], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
    while core.has_unfinished_requests():
        core.step()
    arrival = {f"s{i}": i * interval_s for i in range(len(prompts))}
    times: dict[str, list[float]] = {rid: [] for rid in arrival}
    steps: list[dict[str, Any]] = []
    pending = list(range(len(prompts)))
    t0 = time.perf_counter()
    while pending or core.has_unfinished_requests():
        now = time.perf_counter() - t0
        while pending and arrival[f"s{pending[0]}"] <= now:
            i = pending.pop(0)
            core.add_request(f"s{i}", prompts[i], SamplingParams(max_tokens=output_len, temperature=0.0,
                                                                 ignore_eos=True))
        if not core.has_unfinished_requests():
            time.sleep(max(arrival[f"s{pending[0]}"] - now, 0.0))
            continue
        s0 = time.perf_counter()
        outputs = core.step()
        s1 = time.perf_counter()
        stats = core.stats()
        decodes = sum(1 for o in outputs if o.outputs[0].new_token_ids and len(o.outputs[0].token_ids) > 1)
        steps.append({"t": round(s1 - t0, 4), "wall_s": round(s1 - s0, 5), "seqs": stats.last_step_num_seqs,
                      "tokens": stats.last_step_num_batched_tokens, "decodes": decodes})
        for out in outputs:
            times[out.request_id].extend([s1 - t0] * len(out.outputs[0].new_token_ids))
    cfg = core.config
    settings = {k: getattr(cfg, k) for k in ("max_num_seqs", "max_num_batched_tokens", "step_token_budget",
                                             "max_model_len", "block_size", "num_threads")}
    settings["kv_blocks"] = core.num_kv_blocks
    return {"arrival": arrival, "times": times, "steps": steps, "wall_s": time.perf_counter() - t0,
            "settings": settings, "preemptions": core.stats().num_preemptions}


def summarize(result: dict[str, Any], output_len: int) -> dict[str, Any]:
    times, arrival = result["times"], result["arrival"]
    bad = [rid for rid, t in times.items() if len(t) != output_len]
    if bad:
        raise RuntimeError(f"stream {bad[0]} produced {len(times[bad[0]])} tokens, expected {output_len}")
    itls = [b - a for t in times.values() for a, b in zip(t, t[1:])]
    ttfts = [t[0] - arrival[rid] for rid, t in times.items()]
    p50, p99 = percentile(itls, 50), percentile(itls, 99)
    step_walls = [s["wall_s"] for s in result["steps"]]
    decoding = [s for s in result["steps"] if s["decodes"]]
    ratio = round(p99 / p50, 2) if p50 else None
    return {
        "itl_p50_s": round(p50, 5), "itl_p99_s": round(p99, 5), "itl_max_s": round(max(itls), 5),
        "itl_p99_over_p50": ratio,
        "ttft_p50_s": round(percentile(ttfts, 50), 4), "ttft_p99_s": round(percentile(ttfts, 99), 4),
        "output_tok_s": round(sum(len(t) for t in times.values()) / result["wall_s"], 2),
        "wall_s": round(result["wall_s"], 2),
        "steps": len(step_walls), "step_p50_s": round(percentile(step_walls, 50), 5),
        "step_p99_s": round(percentile(step_walls, 99), 5),
        "max_tokens_in_a_decoding_step": max((s["tokens"] for s in decoding), default=0),
        "max_concurrent_streams": max((s["seqs"] for s in result["steps"]), default=0),
        "streams": len(times),
        "preemptions": result["preemptions"],
        "target_itl_p99_over_p50_max": ITL_P99_OVER_P50_TARGET,
        "target_met": ratio is not None and ratio <= ITL_P99_OVER_P50_TARGET,
    }


def print_report(report: dict[str, Any]) -> None:
    s, w, st = report["summary"], report["workload"], report["settings"]
    print(f"\nstall bench: {w['streams']} streams x {w['prompt_len']}-token prompts + {w['output_len']} output tokens, "
          f"one arriving every {w['interval_s']} s; step_token_budget {st['step_token_budget']}, "
          f"max_num_batched_tokens {st['max_num_batched_tokens']}, {st['num_threads']} threads")
    print(f"ITL p50 {s['itl_p50_s'] * 1e3:.1f} ms, p99 {s['itl_p99_s'] * 1e3:.1f} ms, "
          f"max {s['itl_max_s'] * 1e3:.1f} ms: p99/p50 {s['itl_p99_over_p50']} (target <= {ITL_P99_OVER_P50_TARGET}: "
          f"{'met' if s['target_met'] else 'MISSED'})")
    print(f"TTFT p50 {s['ttft_p50_s']:.2f} s, p99 {s['ttft_p99_s']:.2f} s (from arrival); {s['output_tok_s']} output "
          f"tok/s; {s['steps']} steps, step p50 {s['step_p50_s'] * 1e3:.1f} ms p99 {s['step_p99_s'] * 1e3:.1f} ms; "
          f"largest decoding step {s['max_tokens_in_a_decoding_step']} tokens; up to {s['max_concurrent_streams']} "
          f"streams at once; {s['preemptions']} preemptions")
    if s["max_concurrent_streams"] < w["streams"]:
        print(f"note: at most {s['max_concurrent_streams']} of the {w['streams']} streams ran at once (each finished "
              f"before the last arrived); the bound is stated for all of them decoding together: on a faster "
              f"machine raise --output-len (or lower --interval-s)")
    print(f"1-minute load average: {report['machine']['loadavg_1m_before']:.1f} before, "
          f"{report['machine']['loadavg_1m_after']:.1f} after ({report['machine']['cpu_count']} CPUs)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m appliance.runtime.bench_stall", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench-results/stall.json")
    p.add_argument("--quick", action="store_true", help="tiny model, 6 streams of 256-token prompts: a smoke test")
    p.add_argument("--streams", type=int, default=None)
    p.add_argument("--prompt-len", type=int, default=None)
    p.add_argument("--output-len", type=int, default=None)
    p.add_argument("--interval-s", type=float, default=None, help="seconds between arrivals")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all CPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default="var/bench-models")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="EngineConfig override, e.g. step_token_budget=256 (repeatable)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    streams = args.streams or (6 if args.quick else 32)
    prompt_len = args.prompt_len or (256 if args.quick else 2048)
    output_len = args.output_len or (16 if args.quick else 512)
    interval = args.interval_s if args.interval_s is not None else (0.05 if args.quick else 1.0)
    model_dir = ensure_checkpoint(Path(args.cache_dir), args.quick)
    model = QUICK_MODEL if args.quick else STALL_MODEL
    engine_args: dict[str, Any] = {"max_num_seqs": 64, "max_num_batched_tokens": 2048 if not args.quick else 256,
                                   "max_model_len": prompt_len + 2 * output_len,
                                   "num_threads": args.threads or os.cpu_count() or 1}
    for pair in args.engine_arg:
        key, _, value = pair.partition("=")
        try:
            engine_args[key] = json.loads(value)
        except json.JSONDecodeError:
            engine_args[key] = value
    prompts = make_streams(streams, prompt_len, model["vocab_size"], args.seed)
    load_before = os.getloadavg()[0]
    print(f"running {streams} streams ...", file=sys.stderr, flush=True)
    result = run(model_dir, prompts, output_len, interval, engine_args)
    import torch

    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m appliance.runtime.bench_stall " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]},
        "model": {"arch": "llama", "dtype": "float32", **model},
        "workload": {"streams": streams, "prompt_len": prompt_len, "output_len": output_len, "interval_s": interval,
                     "seed": args.seed, "sampling": "greedy, EOS ignored"},
        "settings": result["settings"],
        "summary": summarize(result, output_len),
        "steps": result["steps"],
    }
    publish_report(report, args.out, print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
