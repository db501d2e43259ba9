"""A deployment's charts over the last hour (or 15 minutes, or 6 hours), from telemetry's time series: one line per replica.

EngineSample gives TTFT and inter-token latency (p50, p95, p99 per sample interval), tokens/s, batch occupancy
(mean sequences per step / max_num_seqs), KV cache use, engine queue time (p50, p95), preemptions and prefix-cache
hits; OccupancySample gives core (GPU, CPU) utilization. Percentages other than the prefix-cache hit rate get an
axis scaled to their data (capped at 100 %), so 2-5 % is not a flat line at the bottom.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Callable

from django.utils import timezone

from appliance.catalog.models import Deployment
from appliance.telemetry.models import EngineSample, OccupancySample

WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6)}
DEFAULT_WINDOW = "1h"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


Quantiles = tuple[tuple[str, Callable[[EngineSample], float | None]], ...]

# key, title, unit, ceiling (a fixed axis top; None: scaled to the data), cap (the scaled axis never passes it),
# and the lines drawn per replica: (quantile label or "", value of a sample).
CHARTS: list[tuple[str, str, str, float | None, float | None, Quantiles]] = [
    ("ttft", "Time to first token (p50 / p95 / p99)", "ms", None, None,
     (("p50", lambda s: _ms(s.ttft_p50_s)), ("p95", lambda s: _ms(s.ttft_p95_s)),
      ("p99", lambda s: _ms(s.ttft_p99_s)))),
    ("itl", "Inter-token latency (p50 / p95 / p99)", "ms", None, None,
     (("p50", lambda s: _ms(s.itl_p50_s)), ("p95", lambda s: _ms(s.itl_p95_s)), ("p99", lambda s: _ms(s.itl_p99_s)))),
    ("tokens", "Generated tokens / s", "tok/s", None, None, (("", lambda s: _round(s.tokens_per_s)),)),
    ("batch", "Batch occupancy (seqs per step / max)", "%", None, 100.0,
     (("", lambda s: _round(s.batch_occupancy_pct, 2)),)),
    ("kv", "KV cache in use", "%", None, 100.0, (("", lambda s: _round(s.kv_use_pct, 2)),)),
    ("queue", "Engine queue time (p50 / p95)", "ms", None, None,
     (("p50", lambda s: _ms(s.queue_p50_s)), ("p95", lambda s: _ms(s.queue_p95_s)))),
    ("preemptions", "Preemptions / min", "/min", None, None,
     (("", lambda s: _round(60.0 * s.preemptions / s.interval_s, 2) if s.interval_s else None),)),
    ("prefix", "Prefix-cache hits (of prompt tokens looked up)", "%", 100.0, None,
     (("", lambda s: None if s.prefix_cache_hit_rate is None else _round(100.0 * s.prefix_cache_hit_rate)),)),
]
GAUGE_CHARTS = {"kv"}  # read at the sample: a replica's first sample has it; the others are rates over an interval


ENGINE_FIELDS = ("replica_id", "created_at", "interval_s", "ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "itl_p50_s",
                 "itl_p95_s", "itl_p99_s", "queue_p50_s", "queue_p95_s", "tokens_per_s", "seqs_per_step",
                 "max_num_seqs", "kv_blocks_used", "kv_blocks_total", "preemptions", "prefix_cache_hit_rate")


def _t(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def deployment_series(deployment: Deployment, window: str = DEFAULT_WINDOW,
                      now: datetime | None = None) -> dict[str, Any]:
    """{"window", "since", "until" (epoch ms), "charts": [{key, title, unit, max, cap, series: [{label, replica,
    quantile, points}]}]}, points being [t_ms, value]. `window` is one of WINDOWS (anything else: the default).
    A chart with quantiles has one series per replica and quantile."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    now = now or timezone.now()
    since = now - WINDOWS[window]
    replicas = {r.pk: r.index for r in deployment.replicas.all()}
    engine: dict[tuple[str, str], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    samples = EngineSample.objects.filter(replica__deployment=deployment, created_at__gte=since).order_by("created_at")
    for sample in samples.only(*ENGINE_FIELDS):
        for key, _title, _unit, _max, _cap, lines in CHARTS:
            if sample.interval_s is None and key not in GAUGE_CHARTS:  # a first sample has no rates yet
                continue
            for quantile, value in lines:
                engine[(key, quantile)][sample.replica_id].append([_t(sample.created_at), value(sample)])
    charts = []
    for key, title, unit, ceiling, cap, lines in CHARTS:
        series = []
        for rid in sorted({rid for quantile, _ in lines for rid in engine[(key, quantile)]},
                          key=lambda r: replicas.get(r, r)):
            for quantile, _ in lines:
                label = f"replica {replicas[rid]}" if rid in replicas else f"replica #{rid}"
                series.append({"label": f"{label} {quantile}".strip(), "replica": replicas.get(rid, rid),
                               "quantile": quantile, "points": engine[(key, quantile)].get(rid, [])})
        charts.append({"key": key, "title": title, "unit": unit, "max": ceiling, "cap": cap, "series": series})
    charts.append(_utilization(deployment, since, replicas))
    return {"window": window, "since": _t(since), "until": _t(now), "charts": charts}


def _utilization(deployment: Deployment, since: datetime, replicas: dict[int, int]) -> dict[str, Any]:
    """Mean utilization over a replica's cores at each sampling moment (samples of one moment share a second)."""
    moments: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = (OccupancySample.objects.filter(replica__deployment=deployment, created_at__gte=since)
            .order_by("created_at").values_list("replica_id", "created_at", "utilization_pct"))
    for replica_id, created, pct in rows:
        moments[replica_id][_t(created) // 1000 * 1000].append(pct)
    series = [
        {"label": f"replica {replicas[rid]}" if rid in replicas else f"replica #{rid}",
         "replica": replicas.get(rid, rid), "quantile": "",
         "points": [[t, round(sum(v) / len(v), 1)] for t, v in sorted(by_t.items())]}
        for rid, by_t in moments.items()
    ]
    title = {"neuron": "NeuronCore utilization", "cuda": "GPU utilization"}.get(deployment.device, "CPU utilization")
    return {"key": "util", "title": title, "unit": "%", "max": None, "cap": 100.0, "series": series}
