"""The load generator: drives the gateway's /v1/completions with streaming requests, one level at a time.

Plain Python (httpx + asyncio), no Django: the benchmark job, the CLI and a script can all use it. Requests use the
OpenAI wire format (`stream: true`, `stream_options.include_usage`, plus vLLM's `ignore_eos` so each request
generates the profile's output length). Per request it measures TTFT (send to first token chunk), the gaps between
token chunks (inter-token latency), end-to-end latency and the output tokens the final usage chunk reports.

Arrivals: closed loop (`concurrency` workers, each sending its next request when the last one ends) or open loop
(`rate` requests/s with gamma-distributed gaps; `burstiness` 1 is a Poisson process, below 1 burstier).
A level ends after `requests` requests or `duration_s` seconds, or early once errors pass `max_error_rate` of the
requests sent (after at least `min_errors` errors).
"""
from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from .profiles import Prompt


@dataclass(frozen=True)
class LevelSpec:
    """One load level: closed loop at `concurrency`, or open loop at `rate` requests/s."""

    concurrency: int | None = None
    rate: float | None = None
    burstiness: float = 1.0
    requests: int | None = None
    duration_s: float | None = None
    max_error_rate: float = 0.5
    min_errors: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("a level has either a concurrency or a rate")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be positive")
        if not self.burstiness > 0:
            raise ValueError("burstiness must be positive")
        if self.requests is None and self.duration_s is None:
            raise ValueError("a level needs a request count or a duration")


@dataclass(frozen=True)
class SLO:
    """A request meets the SLOs when its TTFT and its mean inter-token latency (TPOT) are within these (seconds)."""

    ttft_s: float = 2.0
    itl_s: float = 0.2  # a human reading speed

    def met_by(self, r: "RequestResult") -> bool:
        return r.ok and r.ttft_s is not None and r.ttft_s <= self.ttft_s and (r.tpot_s or 0.0) <= self.itl_s


@dataclass
class RequestResult:
    ok: bool = False
    status: int = 0
    error_kind: str = ""  # "rate_limited" (429) or "failed" (anything else)
    error: str = ""
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float = 0.0
    output_tokens: int = 0
    input_tokens: int = 0

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT)."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


class Target:
    """Where requests go: the gateway's base URL (…/v1 is appended), a key and a model id."""

    def __init__(self, base_url: str, api_key: str, model: str, timeout_s: float = 600.0) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/completions"
        self.model = model
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"}, timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))

    async def aclose(self) -> None:
        await self.client.aclose()

    def body(self, p: Prompt) -> dict:
        return {"model": self.model, "prompt": p.prompt, "max_tokens": p.max_tokens, "temperature": 0.0,
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}

    async def send(self, p: Prompt) -> RequestResult:
        r = RequestResult()
        start = time.perf_counter()
        last = None
        try:
            async with self.client.stream("POST", self.url, json=self.body(p)) as response:
                r.status = response.status_code
                if response.status_code != 200:
                    detail = (await response.aread()).decode(errors="replace")[:300]
                    return _failed(r, start, detail)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        return _failed(r, start, json.dumps(chunk["error"])[:300])
                    now = time.perf_counter()
                    if any(c.get("text") for c in chunk.get("choices") or []):
                        if last is None:
                            r.ttft_s = now - start
                        else:
                            r.itl_s.append(now - last)
                        last = now
                    usage = chunk.get("usage")
                    if usage:
                        r.output_tokens = int(usage.get("completion_tokens") or 0)
                        r.input_tokens = int(usage.get("prompt_tokens") or 0)
        except (httpx.HTTPError, ValueError) as exc:
            return _failed(r, start, f"{type(exc).__name__}: {exc}")
        r.e2e_s = time.perf_counter() - start
        r.ok = r.ttft_s is not None
        if not r.ok:
            r.error_kind, r.error = "failed", "the stream carried no tokens"
        return r


def _failed(r: RequestResult, start: float, detail: str) -> RequestResult:
    r.e2e_s = time.perf_counter() - start
    r.error_kind = "rate_limited" if r.status == 429 else "failed"
    r.error = detail
    return r


class Sender(Protocol):
    async def send(self, p: Prompt) -> RequestResult: ...


@dataclass
class LevelRun:
    """What one level produced: every request's result, the wall time and whether errors stopped it early."""

    spec: LevelSpec
    results: list[RequestResult]
    duration_s: float
    stopped_early: bool


async def run_level(sender: Sender, spec: LevelSpec, prompts: list[Prompt]) -> LevelRun:
    """Run one level. `prompts` must hold at least `spec.requests` prompts (or, by duration, enough to cycle)."""
    results: list[RequestResult] = []
    stop = asyncio.Event()
    start = time.perf_counter()
    deadline = start + spec.duration_s if spec.duration_s is not None else math.inf
    limit = spec.requests if spec.requests is not None else math.inf
    issued = 0

    def next_prompt() -> Prompt | None:
        nonlocal issued
        if stop.is_set() or issued >= limit or time.perf_counter() >= deadline:
            return None
        p = prompts[issued % len(prompts)]
        issued += 1
        return p

    async def one(p: Prompt) -> None:
        r = await sender.send(p)
        results.append(r)
        errors = sum(1 for x in results if not x.ok)
        if errors >= spec.min_errors and errors > spec.max_error_rate * issued:
            stop.set()

    if spec.concurrency is not None:
        async def worker() -> None:
            while (p := next_prompt()) is not None:
                await one(p)

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    else:
        rng = random.Random(spec.seed)
        tasks = []
        while (p := next_prompt()) is not None:
            tasks.append(asyncio.create_task(one(p)))
            gap = rng.gammavariate(spec.burstiness, 1.0 / (spec.rate * spec.burstiness))
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(gap, max(deadline - time.perf_counter(), 0.0)))
            except asyncio.TimeoutError:
                pass
        await asyncio.gather(*tasks)
    return LevelRun(spec, results, time.perf_counter() - start, stop.is_set())


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1), linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summarize(run: LevelRun, slo: SLO) -> dict:
    """The level's figures (times in seconds). Latency percentiles are over successful requests; ITL over every gap
    between token chunks of every successful request; goodput counts the requests meeting both SLOs."""
    ok = [r for r in run.results if r.ok]
    ttft = [r.ttft_s for r in ok]
    itl = [gap for r in ok for gap in r.itl_s]
    e2e = [r.e2e_s for r in ok]
    output_tokens = sum(r.output_tokens for r in ok)
    duration = max(run.duration_s, 1e-9)
    goodput = sum(1 for r in ok if slo.met_by(r))
    level = {
        "concurrency": run.spec.concurrency,
        "rate": run.spec.rate,
        "arrival": "closed" if run.spec.concurrency is not None else (
            "poisson" if run.spec.burstiness == 1.0 else "gamma"),
        "burstiness": run.spec.burstiness if run.spec.rate is not None else None,
        "requests": len(run.results),
        "succeeded": len(ok),
        "errors": len(run.results) - len(ok),
        "errors_rate_limited": sum(1 for r in run.results if r.error_kind == "rate_limited"),
        "errors_failed": sum(1 for r in run.results if r.error_kind == "failed"),
        "first_error": next((r.error for r in run.results if not r.ok), ""),
        "stopped_early": run.stopped_early,
        "duration_s": run.duration_s,
        "input_tokens": sum(r.input_tokens for r in ok),
        "output_tokens": output_tokens,
        "output_tok_s": output_tokens / duration,
        "requests_per_s": len(ok) / duration,
        "mean_in_flight": sum(e2e) / duration,  # Little's law: the concurrency the level actually held
        "goodput": goodput,
        "goodput_rps": goodput / duration,
    }
    for name, values in (("ttft", ttft), ("itl", itl), ("e2e", e2e)):
        for q in (50, 90, 99):
            level[f"{name}_p{q}"] = percentile(values, q / 100)
    return level
