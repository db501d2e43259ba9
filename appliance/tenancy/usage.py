"""Usage: monthly token totals, hourly roll-ups of UsageRecord rows, and the summaries the console shows.

UsageRecord rows are written by the gateway, one per request. Roll-ups are recomputed (not incremented) for
every hour that has records in the window and upserted in place, so running the roll-up twice, or concurrently
(serialized by a PostgreSQL advisory lock), gives the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone

from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone

from .models import APIKey, Tenant, UsageRecord, UsageRollup

ROLLUP_LOCK_ID = 0x7573616765  # pg_advisory_xact_lock key serializing roll-ups ("usage")
ROLLUP_VALUES = ("requests", "errors", "prompt_tokens", "completion_tokens")


def month_start(at: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of `at`'s calendar month."""
    at = timezone.localtime(at or timezone.now(), dt_timezone.utc)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_tokens(tenant: Tenant | int, *, api_key: APIKey | int | None = None, at: datetime | None = None) -> int:
    """Prompt + completion tokens used by `tenant` (optionally one key) in the calendar month (UTC) of `at`."""
    start = month_start(at)
    qs = UsageRecord.objects.filter(tenant=tenant, created_at__gte=start)
    if api_key is not None:
        qs = qs.filter(api_key=api_key)
    total = qs.aggregate(t=Coalesce(Sum(F("prompt_tokens") + F("completion_tokens")), 0))["t"]
    return int(total)


def rollup_usage(since: datetime | None = None) -> int:
    """Recompute UsageRollup rows for every hour with UsageRecords at or after `since` (default: 2 hours ago).

    Returns the number of roll-up rows written. Idempotent, and safe to run concurrently.
    """
    since = since or timezone.now() - timedelta(hours=2)
    since = since.replace(minute=0, second=0, microsecond=0)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_ID])
        rows = list(
            UsageRecord.objects.filter(created_at__gte=since)
            .annotate(hour=TruncHour("created_at", tzinfo=dt_timezone.utc))
            .values("tenant_id", "api_key_id", "model_name", "hour")
            .annotate(
                requests=Count("id"),
                errors=Count("id", filter=Q(status_code__gte=400)),
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                last=Max("created_at"),
            )
        )
        hours = {r["hour"] for r in rows}
        existing = {
            (u.tenant_id, u.api_key_id, u.model_name, u.period_start): u
            for u in UsageRollup.objects.filter(period_start__in=hours)
        }
        changed, created = [], []
        for r in rows:
            values = {
                "requests": r["requests"], "errors": r["errors"],
                "prompt_tokens": r["prompt"] or 0, "completion_tokens": r["completion"] or 0,
            }
            rollup = existing.pop((r["tenant_id"], r["api_key_id"], r["model_name"], r["hour"]), None)
            if rollup is None:
                created.append(UsageRollup(
                    tenant_id=r["tenant_id"], api_key_id=r["api_key_id"], model_name=r["model_name"],
                    period_start=r["hour"], **values,
                ))
            elif any(getattr(rollup, k) != v for k, v in values.items()):
                for k, v in values.items():
                    setattr(rollup, k, v)
                changed.append(rollup)
        UsageRollup.objects.bulk_create(created)
        UsageRollup.objects.bulk_update(changed, list(ROLLUP_VALUES))
        UsageRollup.objects.filter(pk__in=[u.pk for u in existing.values()]).delete()
        last_used: dict[int, datetime] = {}
        for r in rows:
            if r["api_key_id"] is not None:
                last_used[r["api_key_id"]] = max(r["last"], last_used.get(r["api_key_id"], r["last"]))
        for key_id, at in last_used.items():
            APIKey.objects.filter(pk=key_id).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=at)).update(
                last_used_at=at
            )
    return len(rows)


@dataclass(frozen=True)
class UsageSummary:
    """Requests, tokens and latency over a window, for the console."""

    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    p50_latency_ms: float | None
    p50_ttft_ms: float | None


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summarize(records: QuerySet[UsageRecord]) -> UsageSummary:
    """Totals and median latencies of a set of usage records."""
    agg = records.aggregate(
        requests=Count("id"),
        errors=Count("id", filter=Q(status_code__gte=400)),
        prompt=Coalesce(Sum("prompt_tokens"), 0),
        completion=Coalesce(Sum("completion_tokens"), 0),
    )
    ok = records.filter(status_code__lt=400)
    latencies = list(ok.values_list("latency_ms", flat=True))
    ttfts = [v for v in ok.values_list("ttft_ms", flat=True) if v is not None]
    return UsageSummary(
        requests=agg["requests"], errors=agg["errors"], prompt_tokens=agg["prompt"],
        completion_tokens=agg["completion"], p50_latency_ms=percentile(latencies, 0.5),
        p50_ttft_ms=percentile(ttfts, 0.5),
    )


def summarize_by_model(since: datetime, tenant: Tenant | None = None) -> dict[str, UsageSummary]:
    """Per model name (the deployment name), usage since `since`."""
    qs = UsageRecord.objects.filter(created_at__gte=since)
    if tenant is not None:
        qs = qs.filter(tenant=tenant)
    names = sorted(set(qs.values_list("model_name", flat=True)))
    return {name: summarize(qs.filter(model_name=name)) for name in names}
