"""The benchmark's seeded mixed workload and the per-system result it produces.

All requests arrive at once at t=0; each has a fixed output length that every system must produce exactly
(EOS ignored), so systems are compared on the same token counts.
"""
from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.runtime.tiny_models import SMALL_SHAPE

BENCH_MODEL: dict[str, Any] = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)
QUICK_MODEL: dict[str, Any] = SMALL_SHAPE  # the tests' tiny Llama


@dataclass(frozen=True)
class WorkloadSpec:
    num_requests: int = 64
    prompt_len: tuple[int, int] = (16, 512)
    output_len: tuple[int, int] = (16, 256)
    seed: int = 0


@dataclass(frozen=True)
class BenchRequest:
    index: int
    prompt_token_ids: list[int]
    max_tokens: int


def make_workload(spec: WorkloadSpec, vocab_low: int, vocab_high: int) -> list[BenchRequest]:
    """Seeded requests with prompt and output lengths uniform in the spec's ranges; token ids in [low, high)."""
    rng = random.Random(spec.seed)
    requests = []
    for i in range(spec.num_requests):
        plen = rng.randint(*spec.prompt_len)
        olen = rng.randint(*spec.output_len)
        prompt = [rng.randrange(vocab_low, vocab_high) for _ in range(plen)]
        requests.append(BenchRequest(i, prompt, olen))
    return requests


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class RequestTiming:
    """One request's token times, in seconds since the whole workload was submitted."""

    output_tokens: int
    token_times: list[float]

    @property
    def ttft(self) -> float:
        return self.token_times[0]

    @property
    def itls(self) -> list[float]:
        return [b - a for a, b in zip(self.token_times, self.token_times[1:])]


@dataclass
class SystemResult:
    name: str
    wall_s: float
    output_tokens: int
    timings: list[RequestTiming] = field(repr=False, default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.output_tokens / self.wall_s

    def summary(self) -> dict[str, Any]:
        ttfts = [t.ttft for t in self.timings]
        itls = [x for t in self.timings for x in t.itls]
        return {
            "name": self.name,
            "wall_s": round(self.wall_s, 3),
            "output_tokens": self.output_tokens,
            "throughput_tok_s": round(self.throughput, 2),
            "ttft_p50_s": _round(percentile(ttfts, 50)),
            "ttft_p99_s": _round(percentile(ttfts, 99)),
            "itl_p50_s": _round(percentile(itls, 50)),
            "itl_p99_s": _round(percentile(itls, 99)),
            "itl_mean_s": _round(statistics.fmean(itls) if itls else None),
            "settings": self.settings,
            **self.extra,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 5)


def check_counts(result: SystemResult, requests: list[BenchRequest]) -> None:
    """Every system must produce exactly the requested number of tokens per request."""
    expected = [r.max_tokens for r in requests]
    got = [t.output_tokens for t in result.timings]
    if got != expected:
        bad = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b) if len(got) == len(expected) else -1
        raise RuntimeError(f"{result.name}: wrong output token counts (first mismatch at request {bad})")


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


def publish_report(report: dict[str, Any], out: str | Path, print_report: Callable[[dict[str, Any]], None]) -> None:
    """Write a benchmark's report as JSON to `out`, then print it, and where it went."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print_report(report)
    print(f"report written to {path}")
