"""A deployment's charts over the last hour (or 15 minutes, or 6 hours), from telemetry's time series: one line per replica.

EngineSample gives TTFT and inter-token latency (p50 per sample interval), tokens/s, batch occupancy (mean
sequences per step / max_num_seqs) and KV cache use; OccupancySample gives core (GPU, CPU) utilization.
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


CHARTS: list[tuple[str, str, str, Callable[[EngineSample], float | None], float | None]] = [
    ("ttft", "Time to first token (p50)", "ms", lambda s: _ms(s.ttft_p50_s), None),
    ("itl", "Inter-token latency (p50)", "ms", lambda s: _ms(s.itl_p50_s), None),
    ("tokens", "Generated tokens / s", "tok/s", lambda s: _round(s.tokens_per_s), None),
    ("batch", "Batch occupancy (seqs per step / max)", "%", lambda s: _round(s.batch_occupancy_pct), 100.0),
    ("kv", "KV cache in use", "%", lambda s: _round(s.kv_use_pct), 100.0),
]


ENGINE_FIELDS = ("replica_id", "created_at", "interval_s", "ttft_p50_s", "itl_p50_s", "tokens_per_s",
                 "seqs_per_step", "max_num_seqs", "kv_blocks_used", "kv_blocks_total")


def _t(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def deployment_series(deployment: Deployment, window: str = DEFAULT_WINDOW,
                      now: datetime | None = None) -> dict[str, Any]:
    """{"window", "since", "until" (epoch ms), "charts": [{key, title, unit, max, series: [{label, points}]}]},
    points being [t_ms, value]. `window` is one of WINDOWS (anything else: the default)."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    now = now or timezone.now()
    since = now - WINDOWS[window]
    labels = {r.pk: f"replica {r.index}" for r in deployment.replicas.all()}
    engine: dict[str, dict[int, list]] = {key: defaultdict(list) for key, *_ in CHARTS}
    samples = EngineSample.objects.filter(replica__deployment=deployment, created_at__gte=since).order_by("created_at")
    for sample in samples.only(*ENGINE_FIELDS):
        for key, _title, _unit, value, _max in CHARTS:
            if sample.interval_s is None and key != "kv":  # a first sample has gauges but no rates yet
                continue
            engine[key][sample.replica_id].append([_t(sample.created_at), value(sample)])
    charts = [
        {"key": key, "title": title, "unit": unit, "max": ceiling,
         "series": [{"label": labels.get(rid, f"replica #{rid}"), "points": pts} for rid, pts in engine[key].items()]}
        for key, title, unit, _value, ceiling in CHARTS
    ]
    charts.append(_utilization(deployment, since, labels))
    return {"window": window, "since": _t(since), "until": _t(now), "charts": charts}


def _utilization(deployment: Deployment, since: datetime, labels: dict[int, str]) -> dict[str, Any]:
    """Mean utilization over a replica's cores at each sampling moment (samples of one moment share a second)."""
    moments: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = (OccupancySample.objects.filter(replica__deployment=deployment, created_at__gte=since)
            .order_by("created_at").values_list("replica_id", "created_at", "utilization_pct"))
    for replica_id, created, pct in rows:
        moments[replica_id][_t(created) // 1000 * 1000].append(pct)
    series = [
        {"label": labels.get(rid, f"replica #{rid}"),
         "points": [[t, round(sum(v) / len(v), 1)] for t, v in sorted(by_t.items())]}
        for rid, by_t in moments.items()
    ]
    title = {"neuron": "NeuronCore utilization", "cuda": "GPU utilization"}.get(deployment.device, "CPU utilization")
    return {"key": "util", "title": title, "unit": "%", "max": 100.0, "series": series}
