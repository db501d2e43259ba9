"""What the engine priority buys live traffic while a batch runs: live time-to-first-token and latency with the
replica on ``fcfs`` and on ``priority``, same model, same load, in one run.

    python -m appliance.jobs.bench_priority [--model DIR] [--max-num-seqs 4] [--batch 32] [--live 6]

A "batch" of requests at priority 10 (BATCH_PRIORITY) is queued first; live requests at priority 0 arrive while it
runs. The replica admits at most ``--max-num-seqs`` sequences at once, so requests wait in its queue: under fcfs the
live ones wait behind the batch, under priority they go first. Prints a report and writes JSON to
bench-results/jobs_priority.json. No Django.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

BATCH_PRIORITY = 10  # appliance.jobs.executor.BATCH_PRIORITY (not imported: that module needs Django settings)


async def _one(engine: Any, request_id: str, prompt: str, max_tokens: int, priority: int) -> tuple[float, float]:
    from appliance.runtime.sampling_params import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    started = time.perf_counter()
    ttft = None
    async for _ in engine.generate(request_id, prompt, params, priority=priority):
        if ttft is None:
            ttft = time.perf_counter() - started
    return ttft or 0.0, time.perf_counter() - started


async def _load(engine: Any, batch: int, live: int, batch_tokens: int, live_tokens: int) -> dict[str, Any]:
    jobs = [asyncio.create_task(_one(engine, f"b{i}", f"batch line {i} " * 4, batch_tokens, BATCH_PRIORITY))
            for i in range(batch)]
    await asyncio.sleep(0.05)
    lives = []
    for i in range(live):
        lives.append(asyncio.create_task(_one(engine, f"l{i}", f"live question {i} " * 4, live_tokens, 0)))
        await asyncio.sleep(0.02)
    live_results = await asyncio.gather(*lives)
    batch_results = await asyncio.gather(*jobs)
    return {"live_ttft_s": statistics.median(t for t, _ in live_results),
            "live_latency_s": statistics.median(e for _, e in live_results),
            "batch_latency_s": statistics.median(e for _, e in batch_results)}


def run_policy(model: str, policy: str, args: argparse.Namespace) -> dict[str, Any]:
    from appliance.runtime.server import build_engine

    engine, _ = build_engine(model, "cpu", "bench", scheduling_policy=policy, max_num_seqs=args.max_num_seqs)
    try:
        asyncio.run(_load(engine, 2, 1, 2, 2))  # warm-up
        return asyncio.run(_load(engine, args.batch, args.live, args.batch_tokens, args.live_tokens))
    finally:
        engine.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint directory (default: a tiny random Llama)")
    p.add_argument("--max-num-seqs", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--live", type=int, default=6)
    p.add_argument("--batch-tokens", type=int, default=24)
    p.add_argument("--live-tokens", type=int, default=8)
    p.add_argument("--out", default="bench-results/jobs_priority.json")
    args = p.parse_args()
    model = args.model
    if model is None:
        from appliance.runtime.tiny_models import make_checkpoint

        model = str(make_checkpoint(Path(tempfile.mkdtemp()) / "tiny", "llama"))
    results = {policy: run_policy(model, policy, args) for policy in ("fcfs", "priority")}
    report = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "results": results,
              "live_ttft_ratio_fcfs_over_priority": results["fcfs"]["live_ttft_s"] / results["priority"]["live_ttft_s"]}
    for policy, r in results.items():
        print(f"{policy:9s} live TTFT {r['live_ttft_s'] * 1000:8.1f} ms   "
              f"live latency {r['live_latency_s'] * 1000:8.1f} ms   "
              f"batch line latency {r['batch_latency_s'] * 1000:8.1f} ms")
    print(f"live TTFT, fcfs / priority: {report['live_ttft_ratio_fcfs_over_priority']:.1f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
