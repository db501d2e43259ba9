"""The numbers behind the console dashboard, served as JSON at /console/live.json and polled by dashboard.js.

Per deployment: status and replicas from the catalog; requests, errors (and by kind: usage_report), tokens, p50 latency and time to first
token over the last hour and requests per minute from UsageRecord (written by the gateway); accelerator occupancy
(utilization, device memory, utilization per minute) from telemetry's OccupancySample rows of its replicas; and
the replicas' cold-start times.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Prefetch
from django.db.models.functions import TruncMinute
from django.utils import timezone

from appliance.catalog.models import Deployment, Replica
from appliance.telemetry.models import OccupancySample
from appliance.tenancy.models import UsageRecord
from appliance.tenancy.usage import summarize

from .usage_report import error_kinds

WINDOW = timedelta(hours=1)
OCCUPANCY_MAX_AGE = timedelta(minutes=2)


def last_cold_start_s(deployment, cold_replicas: list) -> float | None:
    """The deployment's kept record of its last start (there after scale to zero), else its replicas' figure."""
    if deployment.cold_starts:
        return deployment.cold_starts[0].get("total_s")
    if cold_replicas:
        return max(cold_replicas, key=lambda r: r.started_at or r.created_at).cold_start_s
    return None


def minute_buckets(since: datetime, now: datetime) -> tuple[datetime, int]:
    """The first minute and the number of one-minute buckets; the last bucket is the current minute."""
    minutes = max(1, int((now - since).total_seconds() // 60))
    return now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1), minutes


def occupancy(names: list[str], since: datetime, now: datetime) -> dict[str, dict[str, Any]]:
    """Per deployment: mean utilization and summed device memory of its replicas' newest samples (at most two
    minutes old), and mean utilization per minute over [since, now] (None where no sample)."""
    start, minutes = minute_buckets(since, now)
    result: dict[str, dict[str, Any]] = {
        n: {"utilization_pct": None, "memory_bytes": None, "utilization_per_minute": [None] * minutes} for n in names
    }
    newest: dict[tuple, OccupancySample] = {}
    recent = (
        OccupancySample.objects.filter(replica__deployment__name__in=names, created_at__gte=now - OCCUPANCY_MAX_AGE)
        .select_related("replica__deployment")
        .order_by("created_at")
    )
    for sample in recent:
        newest[(sample.node_id, sample.device, sample.core, sample.replica_id)] = sample
    grouped: dict[str, list[OccupancySample]] = defaultdict(list)
    for sample in newest.values():
        grouped[sample.replica.deployment.name].append(sample)
    for name, samples in grouped.items():
        result[name]["utilization_pct"] = sum(s.utilization_pct for s in samples) / len(samples)
        result[name]["memory_bytes"] = sum(s.memory_bytes for s in samples)
    rows = (
        OccupancySample.objects.filter(replica__deployment__name__in=names, created_at__gte=start)
        .annotate(minute=TruncMinute("created_at"))
        .values("replica__deployment__name", "minute")
        .annotate(u=Avg("utilization_pct"))
    )
    for row in rows:
        index = int((row["minute"] - start).total_seconds() // 60)
        if 0 <= index < minutes:
            result[row["replica__deployment__name"]]["utilization_per_minute"][index] = round(row["u"], 1)
    return result


def requests_per_minute(names: list[str], since: datetime, now: datetime) -> dict[str, list[int]]:
    """Requests per minute for each deployment name, oldest minute first; the last entry is the current minute."""
    start, minutes = minute_buckets(since, now)
    series = {name: [0] * minutes for name in names}
    rows = (
        UsageRecord.objects.filter(model_name__in=names, created_at__gte=start)
        .annotate(minute=TruncMinute("created_at"))
        .values("model_name", "minute")
        .annotate(n=Count("id"))
    )
    for row in rows:
        index = int((row["minute"] - start).total_seconds() // 60)
        if 0 <= index < minutes:
            series[row["model_name"]][index] = row["n"]
    return series


def snapshot(now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as plain JSON-able data."""
    now = now or timezone.now()
    since = now - WINDOW
    deployments = list(
        Deployment.objects.select_related("model_version__model")
        .prefetch_related(Prefetch("replicas", queryset=Replica.objects.order_by("index")))
        .order_by("name")
    )
    names = [d.name for d in deployments]
    recent = UsageRecord.objects.filter(created_at__gte=since)
    per_minute = requests_per_minute(names, since, now)
    occupied = occupancy(names, since, now)
    rows = []
    for d in deployments:
        usage = summarize(recent.filter(model_name=d.name))
        kinds = recent.filter(model_name=d.name).aggregate(**error_kinds())
        replicas = list(d.replicas.all())
        cold = [r for r in replicas if r.cold_start_s is not None]
        rows.append({
            "name": d.name,
            "model": d.model_version.model.name,
            "version": d.model_version.version,
            "device": d.device,
            "mode": d.mode,
            "status": d.status,
            "status_message": d.status_message,
            "is_active": d.is_active,
            "replicas": {
                "ready": sum(r.state == Replica.State.READY for r in replicas),
                "total": len(replicas),
                "desired": d.desired_replicas,
                "min": d.min_replicas,
                "max": d.max_replicas,
                "states": [{"index": r.index, "state": r.state, "cold_start_s": r.cold_start_s} for r in replicas],
            },
            "requests": usage.requests,
            "errors": usage.errors,
            "errors_by_kind": kinds,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "p50_latency_ms": usage.p50_latency_ms,
            "p50_ttft_ms": usage.p50_ttft_ms,
            "requests_per_minute": per_minute[d.name],
            "last_request_at": d.last_request_at.isoformat() if d.last_request_at else None,
            "last_cold_start_s": last_cold_start_s(d, cold),
            "cold_start": d.cold_starts[0] if d.cold_starts else None,
            **occupied[d.name],
        })
    total = summarize(recent)
    return {
        "generated_at": now.isoformat(),
        "window_s": int(WINDOW.total_seconds()),
        "deployments": rows,
        "totals": {
            "requests": total.requests,
            "errors": total.errors,
            "tokens": total.prompt_tokens + total.completion_tokens,
            "p50_latency_ms": total.p50_latency_ms,
            "deployments_running": sum(r["status"] == Deployment.Status.RUNNING for r in rows),
            "deployments": len(rows),
        },
    }
