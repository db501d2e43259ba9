"""Engine time series: scrape each ready replica's /metrics into EngineSample rows.

Gauges (running, waiting, KV blocks) are stored as read. Rates and medians are over the time since the replica's
previous sample: the row keeps the cumulative counters and histogram buckets it read (`counters`), so the next
sample subtracts them, whichever process took the previous one. A counter that went down means the engine
restarted; the new values then count from zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.db.models import Q
from prometheus_client.parser import text_string_to_metric_families

from appliance.catalog.models import Node, Replica

from .exposition import SCRAPE_TIMEOUT_S, scrape
from .models import EngineSample

PREFIX = "appliance_engine_"
GAUGES = ("num_requests_running", "num_requests_waiting", "kv_blocks_used", "kv_blocks_total")
COUNTERS = ("generation_tokens", "preemptions", "prefix_cache_queried_tokens", "prefix_cache_hit_tokens", "steps")
HISTOGRAMS = ("request_ttft_seconds", "request_inter_token_seconds", "request_queue_seconds", "step_num_seqs",
              "step_batched_tokens")


@dataclass
class EngineReading:
    """The numbers of one /metrics text that the time series keeps."""

    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"buckets": {le: n}, "sum", "count"}

    def cumulative(self) -> dict[str, Any]:
        return {"counters": self.counters, "histograms": self.histograms}


def parse_metrics(text: str) -> EngineReading:
    """Pick the engine's gauges, counters and histograms out of a Prometheus text exposition (summed over labels).
    Matched by sample name, so it does not depend on the TYPE lines."""
    reading = EngineReading()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(PREFIX)
            if name == sample.name:
                continue
            if name in GAUGES:
                reading.gauges[name] = reading.gauges.get(name, 0.0) + sample.value
            elif name.endswith("_total") and name[: -len("_total")] in COUNTERS:
                key = name[: -len("_total")]
                reading.counters[key] = reading.counters.get(key, 0.0) + sample.value
            else:
                base, _, suffix = name.rpartition("_")
                if base not in HISTOGRAMS or suffix not in ("bucket", "sum", "count"):
                    continue
                hist = reading.histograms.setdefault(base, {"buckets": {}, "sum": 0.0, "count": 0.0})
                if suffix == "bucket":
                    le = sample.labels["le"]
                    hist["buckets"][le] = hist["buckets"].get(le, 0.0) + sample.value
                else:
                    hist[suffix] += sample.value
    return reading


def _le(key: str) -> float:
    return math.inf if key in ("+Inf", "inf") else float(key)


def histogram_quantile(q: float, buckets: dict[str, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts {le: count}: linear within the bucket.
    None when there are no observations."""
    pairs = sorted((_le(k), v) for k, v in buckets.items())
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in pairs:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return pairs[-1][0]


def _reset(current: dict[str, Any], previous: dict[str, Any]) -> bool:
    return any(current["counters"].get(k, 0.0) < v for k, v in previous.get("counters", {}).items())


def _delta_hist(now: dict[str, Any] | None, before: dict[str, Any] | None) -> dict[str, Any] | None:
    if now is None:
        return None
    before = before or {"buckets": {}, "sum": 0.0, "count": 0.0}
    return {
        "buckets": {le: n - before["buckets"].get(le, 0.0) for le, n in now["buckets"].items()},
        "sum": now["sum"] - before["sum"],
        "count": now["count"] - before["count"],
    }


def _mean(hist: dict[str, Any] | None) -> float | None:
    return hist["sum"] / hist["count"] if hist and hist["count"] > 0 else None


def build_sample(replica: Replica, reading: EngineReading, previous: EngineSample | None, now_s: float,
                 max_num_seqs: int | None = None) -> EngineSample:
    """An unsaved EngineSample for `reading`, with rates over the time since `previous` (None: first sample)."""
    g = reading.gauges
    sample = EngineSample(
        replica=replica, running=int(g.get("num_requests_running", 0)), waiting=int(g.get("num_requests_waiting", 0)),
        kv_blocks_used=int(g.get("kv_blocks_used", 0)), kv_blocks_total=int(g.get("kv_blocks_total", 0)),
        max_num_seqs=max_num_seqs, generation_tokens=int(reading.counters.get("generation_tokens", 0)),
        counters=reading.cumulative(),
    )
    if previous is None:
        return sample
    cumulative = reading.cumulative()
    before = {} if _reset(cumulative, previous.counters) else previous.counters
    interval = max(now_s - previous.created_at.timestamp(), 1e-6)
    sample.interval_s = interval

    def delta(name: str) -> float:
        return reading.counters.get(name, 0.0) - before.get("counters", {}).get(name, 0.0)

    def hist(name: str) -> dict[str, Any] | None:
        return _delta_hist(reading.histograms.get(name), before.get("histograms", {}).get(name))

    sample.tokens_per_s = delta("generation_tokens") / interval
    sample.preemptions = int(delta("preemptions"))
    queried = delta("prefix_cache_queried_tokens")
    sample.prefix_cache_hit_rate = delta("prefix_cache_hit_tokens") / queried if queried > 0 else None
    steps_seqs = hist("step_num_seqs")
    sample.seqs_per_step = _mean(steps_seqs) if steps_seqs and steps_seqs["count"] > 0 else 0.0
    sample.tokens_per_step = _mean(hist("step_batched_tokens"))
    for name, prefix, quantiles in (("request_ttft_seconds", "ttft", (50, 95, 99)),
                                    ("request_inter_token_seconds", "itl", (50, 95, 99)),
                                    ("request_queue_seconds", "queue", (50, 95))):
        observed = hist(name)
        for q in quantiles:
            setattr(sample, f"{prefix}_p{q}_s", histogram_quantile(q / 100, observed["buckets"]) if observed else None)
    return sample


def read_health(replica: Replica) -> dict[str, Any]:
    if replica.socket_path:
        with httpx.Client(transport=httpx.HTTPTransport(uds=replica.socket_path), timeout=SCRAPE_TIMEOUT_S) as c:
            return c.get("http://replica/health", headers=replica.auth_headers).json()
    return httpx.get(f"{replica.base_url}/health", headers=replica.auth_headers, timeout=SCRAPE_TIMEOUT_S).json()


def sample_replica(replica: Replica) -> EngineSample | None:
    """Scrape one replica and store its sample; None when it does not answer."""
    import time

    try:
        text = scrape(replica)
        health = read_health(replica)
    except (httpx.HTTPError, ValueError):
        return None
    previous = EngineSample.objects.filter(replica=replica).order_by("-created_at").first()
    sample = build_sample(replica, parse_metrics(text), previous, time.time(), health.get("max_num_seqs"))
    sample.save()
    return sample


def sample_engines(node: Node | None = None) -> list[EngineSample]:
    """One sample per ready replica (of `node`, or every node) that answers."""
    replicas = Replica.objects.filter(state=Replica.State.READY).filter(~Q(port=None) | ~Q(socket_path=""))
    if node is not None:
        replicas = replicas.filter(node=node)
    return [s for s in map(sample_replica, replicas.select_related("deployment")) if s is not None]


def prune(older_than_s: float = 7 * 24 * 3600) -> int:
    """Delete engine samples older than `older_than_s` (default: a week, like the occupancy samples)."""
    from datetime import timedelta

    from django.utils import timezone

    deleted, _ = EngineSample.objects.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than_s)).delete()
    return deleted
