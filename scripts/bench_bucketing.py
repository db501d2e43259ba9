"""Benchmark: what static-shape bucketing costs on the CPU, and that it changes no token.

    python scripts/bench_bucketing.py [--model DIR] [--requests 16] [--max-tokens 24] [--out var/bench/bucketing.json]

Runs the same greedy workload through the engine twice, unbucketed and with EngineConfig(bucketing=...) (the
buckets a Neuron artifact would be compiled for), and reports: whether the outputs are identical, the share of
computed token rows that were padding (prefill and decode), batch occupancy (real rows / bucket rows) of decode
steps, and the wall-time ratio bucketed / unbucketed measured in the same run. Without --model it builds a small
random-weight Llama checkpoint. CPU numbers say nothing about Neuron speed; they show the padding a bucket choice
causes.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUCKETS = {"batch_sizes": [1, 2, 4, 8], "context_lengths": [16, 32, 64, 128], "token_lengths": [64, 128, 256]}


def run(model: str, prompts: list[list[int]], max_tokens: int, bucketing: dict | None) -> tuple[list, list, float]:
    from appliance.runtime.executor.bucketed import BucketedTorchExecutor
    from appliance.runtime.llm import LLM
    from appliance.runtime.sampling_params import SamplingParams

    llm = LLM(model, max_model_len=256, block_size=16, max_num_seqs=8, max_num_batched_tokens=128,
              bucketing=bucketing)
    shapes: list[dict] = []
    ex = llm.engine.executor
    if isinstance(ex, BucketedTorchExecutor):
        execute = ex.execute

        def recording(batch):
            out = execute(batch)
            shapes.extend(ex.last_shapes)
            return out

        ex.execute = recording
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    llm.generate(prompts[:2], params)  # warm-up
    shapes.clear()
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params)
    return [o.token_ids for o in outs], shapes, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="var/bench/bucketing.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from appliance.runtime.tiny_models import make_checkpoint

            model = str(make_checkpoint(Path(tmp) / "llama", "llama", num_hidden_layers=4, hidden_size=128,
                                        intermediate_size=256))
        rng = random.Random(args.seed)
        prompts = [[rng.randrange(4, 500) for _ in range(rng.randint(3, 100))] for _ in range(args.requests)]
        plain, _, t_plain = run(model, prompts, args.max_tokens, None)
        bucketed, shapes, t_bucketed = run(model, prompts, args.max_tokens, BUCKETS)
    pre = [s for s in shapes if s["kind"] == "prefill"]
    dec = [s for s in shapes if s["kind"] == "decode"]
    pre_real, pre_total = sum(s["tokens"] for s in pre), sum(s["length"] for s in pre)
    dec_real, dec_total = sum(s["rows"] for s in dec), sum(s["batch"] for s in dec)
    report = {
        "buckets": BUCKETS,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "token_identical": plain == bucketed,
        "prefill_padding_fraction": round(1 - pre_real / pre_total, 4) if pre_total else 0.0,
        "decode_batch_occupancy": round(dec_real / dec_total, 4) if dec_total else 0.0,
        "decode_steps": len(dec),
        "wall_s_unbucketed": round(t_plain, 3),
        "wall_s_bucketed": round(t_bucketed, 3),
        "wall_ratio_bucketed_over_unbucketed": round(t_bucketed / t_plain, 3),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
