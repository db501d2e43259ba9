"""Periodic tenancy work (run by celery beat)."""
from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.utils.dateparse import parse_datetime

from . import usage


@shared_task(name="tenancy.rollup_usage", ignore_result=True)
def rollup_usage(since: str | None = None) -> int:
    """Recompute hourly UsageRollup rows for hours with usage since `since` (ISO 8601; default two hours ago)."""
    start: datetime | None = parse_datetime(since) if since else None
    if since and start is None:
        raise ValueError(f"since: not an ISO 8601 datetime: {since!r}")
    return usage.rollup_usage(start)
