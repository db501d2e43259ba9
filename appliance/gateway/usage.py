"""Settle a finished request: one UsageRecord row (its tokens are the ones the client received) and metrics."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from . import metrics
from .db import run_db

log = logging.getLogger(__name__)

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass
class Usage:
    tenant_id: int
    key_id: int | None
    model: str
    request_id: str
    endpoint: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None


def _write(u: Usage) -> None:
    from appliance.tenancy.models import UsageRecord

    UsageRecord.objects.create(
        tenant_id=u.tenant_id, api_key_id=u.key_id, model_name=u.model[:100], request_id=u.request_id,
        endpoint=ENDPOINTS.get(u.endpoint, u.endpoint), prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens, latency_ms=u.latency_s * 1000,
        ttft_ms=None if u.ttft_s is None else u.ttft_s * 1000, status_code=u.status)


def observe(model: str, endpoint: str, status: int, latency_s: float, ttft_s: float | None = None,
            prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
    metrics.REQUESTS.labels(model, endpoint, str(status)).inc()
    metrics.LATENCY.labels(model, endpoint).observe(latency_s)
    if ttft_s is not None:
        metrics.TTFT.labels(model).observe(ttft_s)
    if prompt_tokens:
        metrics.TOKENS.labels(model, "prompt").inc(prompt_tokens)
    if completion_tokens:
        metrics.TOKENS.labels(model, "completion").inc(completion_tokens)


async def record(u: Usage) -> None:
    """Write the usage row and count the metrics; never raises (a failed write is logged)."""
    observe(u.model, u.endpoint, u.status, u.latency_s, u.ttft_s, u.prompt_tokens, u.completion_tokens)
    try:
        await run_db(_write, u)
    except Exception:
        log.exception("could not write the usage record of %s", u.request_id)
