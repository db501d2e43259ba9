"""Where an engine step's time goes, stage by stage, at the benchmark's sizes.

    python -m appliance.runtime.profiling [--model DIR] [--threads 2] [--dtype float32] [--json out.json]
    python -m appliance.runtime.profiling --whole-run --threads 2     # the peer benchmark's workload, every step

Runs the engine (EngineCore, TorchExecutor) on the benchmark's model (``bench_workload.BENCH_MODEL``, random
weights, built once; or ``--model``) through a few steady-state scenarios: decode batches of 16, 32 and 64
sequences at 320 tokens of context, and prefill steps of 512, 4 x 512 and 2,000 tokens (one prompt: the
longest the 2,048-position model takes). Each step is timed by
a ``StageClock`` whose marks sit in the engine's step, the executor and the model's forward (every linear layer,
attention, norms, rotary, the LM head, sampling, host-side preparation, scheduler, detokenizer), and the table
gives milliseconds per step and the share of the step. The sampler's extra cost for logprobs and for random
sampling (temperature, top-p) is timed on the decode logits separately. Linear layers' achieved GFLOP/s is printed
under the table. Timings are wall clock: on a machine shared with other busy processes, compare shares, not
milliseconds, across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from appliance.runtime.stage_clock import NULL_CLOCK, StageClock

ORDER = ["scheduler", "step batch (engine)", "prepare (executor)", "embedding", "rms_norm", "qkv_proj", "rotary",
         "attention", "o_proj+residual", "gate_up+silu_mul", "down_proj+residual", "mlp (installed kernel)",
         "lm_head", "prompt logprobs", "sampling", "detokenize+outputs", "return from step"]
LINEARS = ("qkv_proj", "o_proj+residual", "gate_up+silu_mul", "down_proj+residual", "lm_head")


@dataclass
class Scenario:
    name: str
    decode_batch: int = 0  # sequences decoding one token each
    context: int = 0  # their context length
    prefill_lens: list[int] = field(default_factory=list)  # prompts prefilled in one step


@dataclass
class ScenarioResult:
    name: str
    steps: int
    step_s: float  # mean wall seconds per step
    stages: dict[str, float]  # mean seconds per step
    tokens: int  # tokens run per step
    logits_rows: int  # rows through the LM head per step

    def row(self, stage: str) -> str:
        s = self.stages.get(stage)
        return "-" if s is None else f"{s * 1e3:7.2f} {s / self.step_s:5.1%}"


def default_scenarios() -> list[Scenario]:
    return [Scenario("decode 16", decode_batch=16, context=320), Scenario("decode 32", decode_batch=32, context=320),
            Scenario("decode 64", decode_batch=64, context=320), Scenario("prefill 512", prefill_lens=[512]),
            Scenario("prefill 4x512", prefill_lens=[512] * 4), Scenario("prefill 2000", prefill_lens=[2000])]


def _greedy(n: int) -> Any:
    from appliance.runtime.sampling_params import SamplingParams

    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)


def _drain(core: Any) -> None:
    for rid in list(core.requests):
        core.abort_request(rid)
    while core.has_unfinished_requests():
        core.step()


def run_scenario(core: Any, scenario: Scenario, steps: int, rng: random.Random, cpu_time: bool = False
                 ) -> ScenarioResult:
    """Bring the engine to the scenario's state untimed, then time `steps` steps of it with a StageClock (wall
    time, or the process's CPU time with `cpu_time`)."""
    vocab = core.vocab_size
    clock = StageClock(timer=time.process_time if cpu_time else time.perf_counter)
    if scenario.decode_batch:
        shared = [rng.randrange(4, vocab) for _ in range(scenario.context - 16)]
        core.add_request("prefix", shared + [5], _greedy(1))  # later prompts reuse its blocks from the prefix cache
        while core.has_unfinished_requests():
            core.step()
        for i in range(scenario.decode_batch):
            core.add_request(f"d{i}", shared + [rng.randrange(4, vocab) for _ in range(16)], _greedy(steps + 4))
        while any(not r.seqs[0].num_completion_tokens for r in core.requests.values()):
            core.step()
    timed = 0
    wall = 0.0
    for _ in range(steps):
        if scenario.prefill_lens:
            for j, n in enumerate(scenario.prefill_lens):
                core.add_request(f"p{timed}-{j}", [rng.randrange(4, vocab) for _ in range(n)], _greedy(1))
        core.clock = core.executor.clock = clock
        start = clock.timer()
        clock.start()
        core.step()
        clock.mark("return from step")
        wall += clock.timer() - start
        core.clock = core.executor.clock = NULL_CLOCK
        timed += 1
        if scenario.prefill_lens:
            _drain(core)
    _drain(core)
    tokens = scenario.decode_batch or sum(scenario.prefill_lens)
    rows = scenario.decode_batch or len(scenario.prefill_lens)
    stages = {k: v / timed for k, v in clock.totals.items()}
    return ScenarioResult(scenario.name, timed, wall / timed, stages, tokens, rows)


def whole_run(core: Any, requests: list[Any], cpu_time: bool = False) -> tuple[float, int, int, dict[str, float]]:
    """Every request added at once (greedy, EOS ignored), then steps until done, each under one StageClock:
    (seconds, steps, output tokens, seconds per stage), as the peer benchmark's engine runs it."""
    clock = StageClock(timer=time.process_time if cpu_time else time.perf_counter)
    for r in requests:
        core.add_request(f"r{r.index}", list(r.prompt_token_ids), _greedy(r.max_tokens))
    core.clock = core.executor.clock = clock
    steps = tokens = 0
    start = clock.timer()
    clock.start()
    try:
        while core.has_unfinished_requests():
            tokens += sum(len(o.outputs[0].new_token_ids) for o in core.step())
            clock.mark("return from step")
            steps += 1
    finally:
        core.clock = core.executor.clock = NULL_CLOCK
    return clock.timer() - start, steps, tokens, dict(clock.totals)


def sampler_costs(vocab: int, batch: int, repeats: int = 5) -> dict[str, float]:
    """Seconds per call of the sampler on [batch, vocab] logits: greedy, greedy with logprobs=5, temperature alone,
    and top-p on peaked logits (the nucleus fits the sampler's candidates) and on flat ones (a full sort)."""
    from appliance.runtime.sampler import SampleState, Sampler
    from appliance.runtime.sampling_params import SamplingParams

    sampler = Sampler()
    g = torch.Generator().manual_seed(0)
    peaked, flat = torch.randn(batch, vocab, generator=g) * 4, torch.randn(batch, vocab, generator=g)
    kinds = {"greedy": (SamplingParams(temperature=0.0), peaked),
             "greedy + logprobs 5": (SamplingParams(temperature=0.0, logprobs=5), peaked),
             "temperature 0.8": (SamplingParams(temperature=0.8), peaked),
             "top_p 0.9, peaked logits": (SamplingParams(temperature=0.8, top_p=0.9), peaked),
             "top_p 0.9, flat logits": (SamplingParams(temperature=0.8, top_p=0.9), flat)}
    out = {}
    for name, (params, logits) in kinds.items():
        states = [SampleState(params, [1, 2, 3], 3) for _ in range(batch)]
        sampler(logits, states)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            sampler(logits, states)
            best = min(best, time.perf_counter() - start)
        out[name] = best
    return out


def linear_flops(args: Any, tokens: int, logits_rows: int) -> float:
    h, i = args.hidden_size, args.intermediate_size
    q, kv = args.num_heads * args.head_dim, args.num_kv_heads * args.head_dim
    per_token = 2 * h * (q + 2 * kv) + 2 * q * h + 2 * h * 2 * i + 2 * i * h
    return tokens * per_token * args.num_layers + logits_rows * 2 * h * args.vocab_size


def format_table(results: list[ScenarioResult], args: Any) -> str:
    width = 14
    lines = ["| stage | " + " | ".join(r.name for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    seen = [s for s in ORDER if any(s in r.stages for r in results)]
    seen += sorted({s for r in results for s in r.stages} - set(seen))
    for stage in seen:
        lines.append(f"| {stage} | " + " | ".join(r.row(stage).rjust(width) for r in results) + " |")
    lines.append("| unattributed (between marks) | " + " | ".join(
        f"{(r.step_s - sum(r.stages.values())) * 1e3:7.2f} {(r.step_s - sum(r.stages.values())) / r.step_s:5.1%}"
        for r in results) + " |")
    lines.append("| **step (ms)** | " + " | ".join(f"{r.step_s * 1e3:7.2f}" for r in results) + " |")
    outside = ["scheduler", "step batch (engine)", "prepare (executor)", "prompt logprobs", "sampling",
               "detokenize+outputs", "return from step"]
    lines.append("| outside the forward | " + " | ".join(
        f"{sum(r.stages.get(s, 0.0) for s in outside) / r.step_s:.1%}" for r in results) + " |")
    def gflops(r: ScenarioResult) -> float:
        return linear_flops(args, r.tokens, r.logits_rows) / max(sum(r.stages.get(s, 0.0) for s in LINEARS), 1e-9) / 1e9

    lines.append("| linears GFLOP/s | " + " | ".join(f"{gflops(r):.1f}" for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m appliance.runtime.profiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint directory (default: the benchmark's 55M Llama)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: $APPLIANCE_NUM_THREADS or all)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per scenario")
    p.add_argument("--cache-dir", default="var/bench-models")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--whole-run", action="store_true",
                   help="profile a whole run of the peer benchmark's held-out workload instead of the scenarios")
    p.add_argument("--cpu-time", action="store_true",
                   help="charge CPU time of the process instead of wall time (robust on a shared, busy machine)")
    ns = p.parse_args(argv)
    from appliance.runtime.config import EngineConfig
    from appliance.runtime.engine import EngineCore

    if ns.whole_run:
        return main_whole_run(ns)
    if ns.model:
        model_dir = Path(ns.model)
    else:
        from appliance.runtime.bench import ensure_checkpoint

        model_dir = ensure_checkpoint(Path(ns.cache_dir), False, ns.dtype)
    core = EngineCore(EngineConfig(model=str(model_dir), dtype=ns.dtype, max_num_seqs=64, max_num_batched_tokens=2048,
                                   num_threads=ns.threads))
    rng = random.Random(0)
    run_scenario(core, Scenario("warm-up", decode_batch=4, context=64), 2, rng)
    results = []
    for scenario in default_scenarios():
        results.append(run_scenario(core, scenario, ns.steps, rng, ns.cpu_time))
        print(f"  {scenario.name}: {results[-1].step_s * 1e3:.1f} ms/step", file=sys.stderr, flush=True)
    sampling = sampler_costs(core.vocab_size, 64)
    print(f"step profile: {model_dir.name} ({ns.dtype}), {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {'CPU' if ns.cpu_time else 'wall'} "
          f"ms per step and share of the step")
    print(format_table(results, core.args))
    print("sampler alone on [64, vocab] logits: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in sampling.items()))
    if ns.json:
        out = {"model": str(model_dir), "dtype": ns.dtype, "threads": torch.get_num_threads(),
               "scenarios": [r.__dict__ for r in results], "sampler_64_s": sampling}
        Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.json).write_text(json.dumps(out, indent=2))
    return 0


def main_whole_run(ns: argparse.Namespace) -> int:
    """The peer benchmark's model and 64 requests (bench_peer.py), engine settings as that benchmark runs them."""
    from appliance.runtime.bench_peer import (HELD_OUT_MODEL, HELD_OUT_WORKLOAD, MAX_MODEL_LEN, engine_config,
                                              ensure_checkpoint, make_job)
    from appliance.runtime.bench_workload import make_workload
    from appliance.runtime.engine import EngineCore

    model_dir = Path(ns.model) if ns.model else ensure_checkpoint(Path(ns.cache_dir), False)
    requests = make_workload(HELD_OUT_WORKLOAD, 4, HELD_OUT_MODEL["vocab_size"])
    job = {**make_job(model_dir, requests, MAX_MODEL_LEN, False), "dtype": ns.dtype}
    core = EngineCore(engine_config(job, ns.threads))
    warm = job["warmup"]
    core.add_request("warm-up", warm["prompt_token_ids"], _greedy(warm["max_tokens"]))
    _drain_all(core)
    seconds, steps, tokens, stages = whole_run(core, requests, ns.cpu_time)
    total = sum(stages.values())
    print(f"whole run: {model_dir.name} ({ns.dtype}), {torch.get_num_threads()} threads, {len(requests)} requests, "
          f"{steps} steps, {tokens} output tokens in {seconds:.2f} s ({tokens / seconds:.1f} tok/s); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {'CPU' if ns.cpu_time else 'wall'} seconds per stage")
    print("| stage | s | share |\n|---|---:|---:|")
    for name, value in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {value:.3f} | {100 * value / total:.1f}% |")
    if ns.json:
        Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.json).write_text(json.dumps({"model": str(model_dir), "seconds": seconds, "steps": steps,
                                             "tokens": tokens, "stages_s": stages}, indent=2))
    return 0


def _drain_all(core: Any) -> None:
    while core.has_unfinished_requests():
        core.step()


if __name__ == "__main__":
    sys.exit(main())
