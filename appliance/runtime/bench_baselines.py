"""The benchmark's transformers baselines: static batches through `generate`, and transformers' own continuous
batching (`ContinuousBatchingManager`, the machinery behind `generate_batch`, fed per-request output lengths)."""
from __future__ import annotations

from time import perf_counter
from typing import Any

import torch

from appliance.runtime.bench_workload import BenchRequest, RequestTiming, SystemResult


class _StepClock:
    """A `generate` streamer that records when each new token (batch-wide) was produced."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.times: list[float] = []
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.times.append(perf_counter() - self.t0)

    def end(self) -> None:
        pass


def load_hf_model(model_dir: str, device: str, dtype: torch.dtype, attn: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn).to(device)
    return model.eval()


@torch.inference_mode()
def run_static(model, requests: list[BenchRequest], batch_size: int, pad_id: int, device: str,
               order_by: str = "prompt") -> SystemResult:
    """Left-padded batches of `batch_size`, requests sorted (longest first) by prompt length, which a server knows
    at admission, or with order_by="output" by output length, an oracle no real server has. Each batch decodes to
    its longest output and each request is credited only its own tokens, at the times they were produced."""
    if order_by == "output":
        order = sorted(requests, key=lambda r: (r.max_tokens, len(r.prompt_token_ids)), reverse=True)
    elif order_by == "prompt":
        order = sorted(requests, key=lambda r: len(r.prompt_token_ids), reverse=True)
    else:
        raise ValueError(f"order_by must be 'prompt' or 'output', got {order_by!r}")
    timings: dict[int, RequestTiming] = {}
    t0 = perf_counter()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(r.prompt_token_ids) for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, r in enumerate(batch):
            n = len(r.prompt_token_ids)
            ids[row, width - n :] = torch.tensor(r.prompt_token_ids)
            mask[row, width - n :] = 1
        new_tokens = max(r.max_tokens for r in batch)
        clock = _StepClock(t0)
        model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            streamer=clock,
        )
        for r in batch:
            timings[r.index] = RequestTiming(r.max_tokens, clock.times[: r.max_tokens])
    wall = perf_counter() - t0
    ordered = [timings[r.index] for r in requests]
    return SystemResult(
        name="transformers_static",
        wall_s=wall,
        output_tokens=sum(t.output_tokens for t in ordered),
        timings=ordered,
        settings={"batch_size": batch_size, "order": f"{order_by} length descending", "padding": "left",
                  "attn_implementation": model.config._attn_implementation},
    )


@torch.no_grad()
def run_continuous(model, requests: list[BenchRequest], device: str, cb_overrides: dict[str, Any] | None = None,
                   timeout_s: float = 1800.0) -> SystemResult:
    """transformers' continuous batching manager, warmed up before the clock starts, EOS disabled.

    Its CPU attention (sdpa / paged|eager) reads the whole cache through a dense mask every step, and on the CPU the
    default sizing takes a fraction of RAM, which makes every step crawl. So the cache is sized to hold exactly the
    whole workload at once (the same concurrency this engine gets) and the token budget matches the engine's.
    """
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    max_new = max(r.max_tokens for r in requests)
    gen_config = GenerationConfig(do_sample=False, max_new_tokens=max_new, eos_token_id=-1)
    page = 64
    blocks = sum(-(-(len(r.prompt_token_ids) + r.max_tokens) // page) for r in requests)
    cb_kwargs: dict[str, Any] = {"page_size": page, "num_blocks": blocks, "max_batch_tokens": 2048,
                                 "max_requests_per_batch": len(requests), **(cb_overrides or {})}
    cb_config = ContinuousBatchingConfig(**cb_kwargs)
    hints = WorkloadHints(
        max_prompt_length=max(len(r.prompt_token_ids) for r in requests),
        max_generated_length=max_new,
        num_requests=len(requests),
    )
    results = {}
    with model.continuous_batching_context_manager(
        generation_config=gen_config, continuous_batching_config=cb_config, workload_hints=hints, block=True, timeout=30
    ) as manager:
        t0 = perf_counter()
        for r in requests:
            manager.add_request(list(r.prompt_token_ids), request_id=f"r{r.index}", max_new_tokens=r.max_tokens,
                                record_timestamps=True, eos_token_id=-1)
        deadline = t0 + timeout_s
        while len(results) < len(requests):
            if perf_counter() > deadline:
                raise RuntimeError("transformers continuous batching timed out")
            out = manager.get_result(timeout=1)
            if out is None:
                if not manager.is_running():
                    raise RuntimeError("transformers continuous batching thread stopped")
                continue
            if out.is_finished():
                if out.error:
                    raise RuntimeError(f"transformers continuous batching failed: {out.error}")
                results[out.request_id] = out
        wall = perf_counter() - t0
        settings = {"attn_implementation": model.config._attn_implementation, **cb_kwargs}
    timings = []
    for r in requests:
        out = results[f"r{r.index}"]
        times = [t - t0 for t in (out.timestamps or [])]
        timings.append(RequestTiming(len(out.generated_tokens), times))
    return SystemResult(
        name="transformers_continuous",
        wall_s=wall,
        output_tokens=sum(t.output_tokens for t in timings),
        timings=timings,
        settings=settings,
    )
