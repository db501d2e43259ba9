"""The usage page's numbers: requests, errors by kind, tokens and cost per tenant, key and model, and usage over time.

Errors by kind, from the usage rows' status codes: rate-limited (429), content-filtered (a 400 whose request the
guardrails blocked: an ``input_block`` audit row for the request id), rejected (any other 4xx: invalid request,
unknown model, bad key) and failed (5xx).

Cost: what a deployment's replicas cost while they were up in the window — the sum of their engine samples'
intervals (the telemetry sampler's measured up-time) times their cores times the node's price per core-hour
(appliance/console/prices.py) — split among the tenants and keys that used the deployment in proportion to their
tokens (prompt + completion). Usage of the appliance's internal tenants (the playground) is shown, marked internal,
and left out of the billed total.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Trunc

from appliance.catalog.models import Replica
from appliance.telemetry.models import EngineSample
from appliance.tenancy.models import AuditLog, UsageRecord

from .playground import INTERNAL_TENANTS
from .prices import core_hour_price

ERROR_KINDS = ("rate_limited", "content_filtered", "rejected", "failed")
BUCKETS = {"1h": ("minute", timedelta(minutes=1)), "24h": ("hour", timedelta(hours=1)),
           "7d": ("hour", timedelta(hours=6)), "30d": ("day", timedelta(days=1))}


def _blocked() -> Q:
    ids = AuditLog.objects.filter(object_type="gateway.request", action="input_block").values("object_id")
    return Q(status_code=400, request_id__in=ids)


def error_kinds() -> dict[str, Any]:
    """Count() aggregates for each error kind, for .annotate() / .aggregate() over UsageRecord."""
    blocked = _blocked()
    return {
        "rate_limited": Count("id", filter=Q(status_code=429)),
        "content_filtered": Count("id", filter=blocked),
        "rejected": Count("id", filter=Q(status_code__gte=400, status_code__lt=500) & ~Q(status_code=429) & ~blocked),
        "failed": Count("id", filter=Q(status_code__gte=500)),
    }


def deployment_costs(since: datetime, until: datetime) -> dict[str, float]:
    """USD per deployment name: its replicas' measured up-time in [since, until] x cores x price per core-hour."""
    costs: dict[str, float] = defaultdict(float)
    rows = (EngineSample.objects.filter(created_at__gte=since, created_at__lte=until, interval_s__isnull=False)
            .values("replica_id").annotate(up_s=Sum("interval_s")))
    up = {r["replica_id"]: r["up_s"] for r in rows}
    for replica in Replica.objects.filter(pk__in=list(up)).select_related("node", "deployment"):
        cores = max(len(replica.cores or []), 1)
        costs[replica.deployment.name] += up[replica.pk] / 3600.0 * cores * core_hour_price(replica.node)
    return dict(costs)


def usage_rows(records: QuerySet[UsageRecord], since: datetime, until: datetime,
               by_key: bool = False) -> list[dict[str, Any]]:
    """One row per tenant and model (and key, with `by_key`): requests, errors by kind, tokens, cost."""
    fields = ["tenant__name", "tenant__kind", "model_name"] + (["api_key__prefix", "api_key__name"] if by_key else [])
    rows = list(
        records.values(*fields)
        .annotate(requests=Count("id"), errors=Count("id", filter=Q(status_code__gte=400)),
                  prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), **error_kinds())
        .order_by(*fields)
    )
    costs = deployment_costs(since, until)
    tokens_per_model: dict[str, int] = defaultdict(int)
    for r in UsageRecord.objects.filter(created_at__gte=since, created_at__lte=until).values("model_name").annotate(
            t=Sum(F("prompt_tokens") + F("completion_tokens"))):
        tokens_per_model[r["model_name"]] = r["t"] or 0
    for r in rows:
        r["prompt"], r["completion"] = r["prompt"] or 0, r["completion"] or 0
        total = tokens_per_model.get(r["model_name"], 0)
        share = (r["prompt"] + r["completion"]) / total if total else 0.0
        r["cost"] = round(costs.get(r["model_name"], 0.0) * share, 6)
        r["internal"] = r["tenant__name"] in INTERNAL_TENANTS or r.get("tenant__kind") == "benchmark"
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    billed = [r for r in rows if not r["internal"]]
    return {"cost_billed": round(sum(r["cost"] for r in billed), 6),
            "cost_internal": round(sum(r["cost"] for r in rows if r["internal"]), 6),
            **{kind: sum(r[kind] for r in rows) for kind in ERROR_KINDS}}


def over_time(records: QuerySet[UsageRecord], window: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Charts for ConsoleCharts.lineChart: tokens and requests per bucket, one series per tenant."""
    kind, step = BUCKETS.get(window, BUCKETS["24h"])
    per: dict[str, dict[int, dict[str, int]]] = defaultdict(dict)
    rows = (records.annotate(bucket=Trunc("created_at", kind)).values("tenant__name", "bucket")
            .annotate(n=Count("id"), t=Sum(F("prompt_tokens") + F("completion_tokens"))))
    for r in rows:
        start = r["bucket"]
        if step > timedelta(hours=1) and kind == "hour":  # 6-hour buckets from hourly ones
            start = start.replace(hour=start.hour - start.hour % 6)
        t = int(start.timestamp() * 1000)
        cell = per[r["tenant__name"]].setdefault(t, {"n": 0, "t": 0})
        cell["n"] += r["n"]
        cell["t"] += r["t"] or 0

    def chart(key: str, title: str, unit: str, field: str) -> dict[str, Any]:
        return {"key": key, "title": title, "unit": unit, "max": None, "cap": None, "series": [
            {"label": tenant, "replica": i, "quantile": "", "points": [[t, v[field]] for t, v in sorted(b.items())]}
            for i, (tenant, b) in enumerate(sorted(per.items()))]}

    return {"since": int(since.timestamp() * 1000), "until": int(until.timestamp() * 1000),
            "bucket_s": int(step.total_seconds()),
            "charts": [chart("usage-tokens", f"Tokens per {_span(step)}", "tokens", "t"),
                       chart("usage-requests", f"Requests per {_span(step)}", "requests", "n")]}


def _span(step: timedelta) -> str:
    s = int(step.total_seconds())
    return {60: "minute", 3600: "hour", 21600: "6 hours", 86400: "day"}.get(s, f"{s} s")
