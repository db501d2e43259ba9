"""The numbers behind the console dashboard, served as JSON at /console/live.json and polled by dashboard.js.

Today they come from the catalog rows (deployment status, replicas) and from UsageRecord (requests, tokens,
p50 latency and time to first token over the last hour, requests per minute). Telemetry can add its own series
(occupancy, KV use, core utilization) by providing ``appliance.telemetry.feed.deployment_metrics(names, since)``,
returning ``{deployment_name: {metric: value_or_list}}``; whatever it returns is merged under each deployment's
``telemetry`` key, and the dashboard draws numeric values as columns and lists as sparklines.
"""
from __future__ import annotations

import importlib
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Callable

from django.db.models import Count, Prefetch
from django.db.models.functions import TruncMinute
from django.utils import timezone

from appliance.catalog.models import Deployment, Replica
from appliance.tenancy.models import UsageRecord
from appliance.tenancy.usage import summarize

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
TELEMETRY_FEED = "appliance.telemetry.feed"


def _telemetry_feed() -> Callable[[list[str], datetime], dict[str, dict[str, Any]]] | None:
    try:
        module = importlib.import_module(TELEMETRY_FEED)
    except ImportError:
        return None
    return getattr(module, "deployment_metrics", None)


def requests_per_minute(names: list[str], since: datetime, now: datetime) -> dict[str, list[int]]:
    """Requests per minute for each deployment name, oldest minute first; the last entry is the current minute."""
    minutes = max(1, int((now - since).total_seconds() // 60))
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
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
    extra: dict[str, dict[str, Any]] = defaultdict(dict)
    feed = _telemetry_feed()
    if feed is not None:
        try:
            extra.update(feed(names, since) or {})
        except Exception:  # the dashboard must keep working when telemetry is broken
            log.exception("telemetry feed failed")
    rows = []
    for d in deployments:
        usage = summarize(recent.filter(model_name=d.name))
        replicas = list(d.replicas.all())
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
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "p50_latency_ms": usage.p50_latency_ms,
            "p50_ttft_ms": usage.p50_ttft_ms,
            "requests_per_minute": per_minute[d.name],
            "last_request_at": d.last_request_at.isoformat() if d.last_request_at else None,
            "telemetry": extra.get(d.name, {}),
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
