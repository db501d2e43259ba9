"""Throughput benchmark: this engine against transformers' static-batch `generate` and transformers' own continuous
batching, on one seeded mixed workload, in one run.

    python -m appliance.runtime.bench [--out bench-results/engine.json] [--quick] [--device cpu|cuda]
    python -m appliance.runtime.bench --stall ...        ITL while long prompts arrive (bench_stall.py)
    python -m appliance.runtime.bench --peer vllm ...    the engine against vLLM for CPU (bench_peer.py)

The full run uses the ~55M-parameter Llama of the engine issue (random weights, built once and cached) and 64
requests (prompts 16-512 tokens, outputs 16-256 tokens, all arriving at once, EOS ignored so every system produces
the same tokens). --quick uses a tiny model and 8 short requests (a smoke test). Prints a report and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance.runtime import openmp_env  # noqa: E402

openmp_env.apply()  # before torch loads OpenMP; APPLIANCE_OMP_WAIT=spin for a machine the bench owns

import torch  # noqa: E402

from appliance.runtime.bench_workload import (BENCH_MODEL, QUICK_MODEL, BenchRequest, SystemResult, WorkloadSpec,
                                              check_counts, make_workload, publish_report)

RATIO_TARGET = 2.0
OUTSIDE_FORWARD_TARGET = 0.10
LARGE_BATCH = 16


def ensure_checkpoint(cache_dir: Path, quick: bool, dtype: str) -> Path:
    """The benchmark model, built once with random weights and reused from cache_dir."""
    from appliance.runtime.tiny_models import make_checkpoint

    name = ("quick" if quick else "llama-55m") + f"-{dtype}"
    path = cache_dir / name
    if not (path / "config.json").exists() or not list(path.glob("*.safetensors")):
        make_checkpoint(path, "llama", dtype=dtype, **(QUICK_MODEL if quick else BENCH_MODEL))
    return path


def run_engine(model_dir: Path, requests: list[BenchRequest], device: str, dtype: str,
               engine_args: dict[str, Any]) -> SystemResult:
    """This engine's EngineCore stepped directly (no HTTP), after a short warm-up."""
    from appliance.runtime.config import EngineConfig
    from appliance.runtime.engine import EngineCore
    from appliance.runtime.sampling_params import SamplingParams

    core = EngineCore(EngineConfig(model=str(model_dir), device=device, dtype=dtype, **engine_args))
    _drain(core, [("warmup", requests[0].prompt_token_ids[:16], 4)])
    steps_before = core.stats().steps
    times: dict[str, list[float]] = {f"r{r.index}": [] for r in requests}
    step_log: list[tuple[int, float, float]] = []  # (num_seqs, step wall s, forward s)
    t0 = time.perf_counter()
    for r in requests:
        params = SamplingParams(max_tokens=r.max_tokens, temperature=0.0, ignore_eos=True)
        core.add_request(f"r{r.index}", list(r.prompt_token_ids), params)
    while core.has_unfinished_requests():
        s0 = time.perf_counter()
        outputs = core.step()
        s1 = time.perf_counter()
        stats = core.stats()
        step_log.append((stats.last_step_num_seqs, s1 - s0, stats.forward_time_s))
        now = s1 - t0
        for out in outputs:
            times[out.request_id].extend([now] * len(out.outputs[0].new_token_ids))
    wall = time.perf_counter() - t0
    from appliance.runtime.bench_workload import RequestTiming

    timings = [RequestTiming(len(times[f"r{r.index}"]), times[f"r{r.index}"]) for r in requests]
    stats = core.stats()
    cfg = core.config
    settings = {k: getattr(cfg, k) for k in ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_kv_blocks")
                if hasattr(cfg, k)}
    settings["kv_blocks_total"] = stats.kv_blocks_total
    return SystemResult("engine", wall, sum(t.output_tokens for t in timings), timings, settings,
                        extra={"steps": stats.steps - steps_before, "preemptions": stats.num_preemptions,
                               "outside_forward": outside_forward(step_log)})


def _drain(core: Any, reqs: list[tuple[str, list[int], int]]) -> None:
    from appliance.runtime.sampling_params import SamplingParams

    for rid, prompt, n in reqs:
        core.add_request(rid, prompt, SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True))
    while core.has_unfinished_requests():
        core.step()


def outside_forward(step_log: list[tuple[int, float, float]]) -> dict[str, Any]:
    """Share of step wall time spent outside the model forward, overall and over steps with >= 16 sequences."""

    def share(rows: list[tuple[int, float, float]]) -> float | None:
        total = sum(r[1] for r in rows)
        return None if not rows or total <= 0 else round(max(total - sum(r[2] for r in rows), 0.0) / total, 4)

    large = [r for r in step_log if r[0] >= LARGE_BATCH]
    return {"overall": share(step_log), f"batch_ge_{LARGE_BATCH}": share(large), "steps": len(step_log),
            f"steps_batch_ge_{LARGE_BATCH}": len(large),
            "mean_step_s": round(sum(r[1] for r in step_log) / max(len(step_log), 1), 5)}


def build_report(results: list[SystemResult], spec: WorkloadSpec, requests: list[BenchRequest], model: dict[str, Any],
                 device: str, dtype: str, quick: bool) -> dict[str, Any]:
    systems = {r.name: r.summary() for r in results}
    engine = next((r for r in results if r.name == "engine"), None)
    baselines = [r for r in results if r.name != "engine"]
    best = max(baselines, key=lambda r: r.throughput) if baselines else None
    ratio = round(engine.throughput / best.throughput, 3) if engine and best else None
    outside = engine.extra["outside_forward"] if engine else {}
    large = outside.get(f"batch_ge_{LARGE_BATCH}")
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m appliance.runtime.bench " + " ".join(sys.argv[1:]),
        "quick": quick,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "loadavg_1m_after": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "torch": torch.__version__, "transformers": _version("transformers"), "device": device,
                    "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None},
        "model": {"arch": "llama", "dtype": dtype, **model},
        "workload": {**asdict(spec), "prompt_tokens": sum(len(r.prompt_token_ids) for r in requests),
                     "output_tokens": sum(r.max_tokens for r in requests), "arrival": "all at t=0",
                     "eos": "ignored (fixed output lengths)"},
        "systems": systems,
        "best_baseline": best.name if best else None,
        "ratio_engine_to_best_baseline": ratio,
        "engine_outside_forward_share": outside,
        "targets": {"ratio_min": RATIO_TARGET, "ratio_met": None if ratio is None else ratio >= RATIO_TARGET,
                    f"outside_forward_max_at_batch_ge_{LARGE_BATCH}": OUTSIDE_FORWARD_TARGET,
                    "outside_forward_met": None if large is None else large <= OUTSIDE_FORWARD_TARGET},
    }


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def print_report(report: dict[str, Any]) -> None:
    def fmt(x: Any, scale: float = 1.0, unit: str = "") -> str:
        return "-" if x is None else f"{x * scale:.1f}{unit}"

    w = report["workload"]
    print(f"\nbench: {report['model']['arch']} {report['model']['hidden_size']}h x{report['model']['num_hidden_layers']}"
          f" ({report['model']['dtype']}) on {report['machine']['device']}, {w['num_requests']} requests, "
          f"{w['prompt_tokens']} prompt / {w['output_tokens']} output tokens, all at once")
    print(f"{'system':26} {'tok/s':>9} {'wall s':>8} {'TTFT p50':>10} {'TTFT p99':>10} {'ITL p50':>9} {'ITL p99':>9}")
    for s in report["systems"].values():
        print(f"{s['name']:26} {s['throughput_tok_s']:9.1f} {s['wall_s']:8.2f} {fmt(s['ttft_p50_s'], 1e3, 'ms'):>10}"
              f" {fmt(s['ttft_p99_s'], 1e3, 'ms'):>10} {fmt(s['itl_p50_s'], 1e3, 'ms'):>9}"
              f" {fmt(s['itl_p99_s'], 1e3, 'ms'):>9}")
    t = report["targets"]
    o = report["engine_outside_forward_share"]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else "met" if met else "MISSED"

    print(f"engine / best baseline ({report['best_baseline']}): {report['ratio_engine_to_best_baseline']}x "
          f"(target >= {t['ratio_min']}: {verdict(t['ratio_met'])})")
    if o:
        large = o.get(f"batch_ge_{LARGE_BATCH}")
        print(f"engine step time outside the model forward: overall {fmt(o['overall'], 100, '%')}, "
              f"at batch >= {LARGE_BATCH} {fmt(large, 100, '%')} over {o[f'steps_batch_ge_{LARGE_BATCH}']} steps "
              f"(target <= {OUTSIDE_FORWARD_TARGET:.0%}: {verdict(t['outside_forward_met'])})")
    print(f"1-minute load average on this machine: {report['machine']['loadavg_1m_before']:.1f} before, "
          f"{report['machine']['loadavg_1m_after']:.1f} after ({report['machine']['cpu_count']} CPUs)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m appliance.runtime.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench-results/engine.json")
    p.add_argument("--quick", action="store_true", help="tiny model, 8 short requests: a smoke test")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    p.add_argument("--systems", default="engine,static,continuous", help="comma list of engine, static, continuous")
    p.add_argument("--static-batch-size", type=int, default=None, help="transformers generate batch size")
    p.add_argument("--static-order", choices=["prompt", "output"], default="prompt",
                   help="static batches sorted by prompt length (known at admission) or output length (an oracle)")
    p.add_argument("--num-requests", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for every system (default: all CPUs)")
    p.add_argument("--cache-dir", default="var/bench-models", help="where the random-weight model is cached")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="EngineConfig override, e.g. max_num_seqs=64 (repeatable)")
    return p.parse_args(argv)


def _engine_args(pairs: list[str], quick: bool) -> dict[str, Any]:
    args: dict[str, Any] = {"max_num_seqs": 64, "max_num_batched_tokens": 2048} if not quick else {"max_num_seqs": 8}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            args[key] = json.loads(value)
        except json.JSONDecodeError:
            args[key] = value
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--stall" in argv:
        from appliance.runtime import bench_stall

        return bench_stall.main([a for a in argv if a != "--stall"])
    if any(a == "--peer" or a.startswith("--peer=") for a in argv):
        from appliance.runtime import bench_peer

        return bench_peer.main(argv)
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device on this machine; nothing was measured", file=sys.stderr)
        return 2
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    spec = (WorkloadSpec(num_requests=args.num_requests or 8, prompt_len=(8, 48), output_len=(4, 24), seed=args.seed)
            if args.quick else WorkloadSpec(num_requests=args.num_requests or 64, seed=args.seed))
    t = time.perf_counter()
    model_dir = ensure_checkpoint(Path(args.cache_dir), args.quick, dtype)
    print(f"model ready in {time.perf_counter() - t:.1f} s: {model_dir}", file=sys.stderr, flush=True)
    model_cfg = QUICK_MODEL if args.quick else BENCH_MODEL
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    requests = make_workload(spec, 4, min(len(tokenizer), model_cfg["vocab_size"]))
    results: list[SystemResult] = []
    load_before = os.getloadavg()[0]
    for name in systems:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = run_system(name, model_dir, requests, args, dtype, tokenizer.pad_token_id or 0)
        result.extra["setup_s"] = round(time.perf_counter() - started - result.wall_s, 2)
        check_counts(result, requests)
        result.extra["loadavg_1m"] = os.getloadavg()[0]
        results.append(result)
        print(f"  {name}: {result.throughput:.1f} output tok/s in {result.wall_s:.1f} s "
              f"(+{result.extra['setup_s']:.1f} s loading and warm-up)", file=sys.stderr, flush=True)
    report = build_report(results, spec, requests, model_cfg, args.device, dtype, args.quick)
    report["machine"]["loadavg_1m_before"] = load_before
    publish_report(report, args.out, print_report)
    return 0


def run_system(name: str, model_dir: Path, requests: list[BenchRequest], args: argparse.Namespace, dtype: str,
               pad_id: int) -> SystemResult:
    from appliance.runtime import bench_baselines as hf

    threads = args.threads or os.cpu_count() or 1
    if name == "engine":
        engine_args = {"num_threads": threads, **_engine_args(args.engine_arg, args.quick)}
        return run_engine(model_dir, requests, args.device, dtype, engine_args)
    torch.set_num_threads(threads)
    model = hf.load_hf_model(str(model_dir), args.device, getattr(torch, dtype))
    try:
        if name == "static":
            batch = args.static_batch_size or (4 if args.quick else 16)
            hf.run_static(model, requests[:2], batch, pad_id, args.device)  # warm-up
            return hf.run_static(model, requests, batch, pad_id, args.device, args.static_order)
        if name == "continuous":
            return hf.run_continuous(model, requests, args.device)
        raise SystemExit(f"unknown system {name!r}; choose from engine, static, continuous")
    finally:
        del model


if __name__ == "__main__":
    sys.exit(main())
