"""Runs one OpenAI request body on behalf of a batch line or an async request through the gateway's own path
(``appliance.gateway.internal.run_request``: validation, model access, routing, usage, the monthly token budget)
at a lower engine priority than live traffic (0)."""
from __future__ import annotations

import asyncio
import os
from typing import Any

from django.conf import settings

BATCH_PRIORITY = 10
ASYNC_PRIORITY = 5


def setting(name: str, default: float) -> float:
    """A Django setting of that name, else the environment, else the default."""
    value = getattr(settings, name, None)
    return float(os.environ.get(name, default) if value is None else value)


def unavailable_retries() -> int:
    """How many more times a request is tried when no replica could take it (503), e.g. a cold start that took
    longer than the gateway's cold-start wait."""
    return int(setting("JOBS_UNAVAILABLE_RETRIES", 3))


async def execute(api_key: Any, endpoint: str, body: dict[str, Any], priority: int,
                  source: str = "batch", usage_sink: list | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, response body or {"error": {...}}) for one non-streaming request. With `usage_sink`, every
    attempt's usage row is appended there, for the caller to write with the outcome (usage.write_rows)."""
    from appliance.gateway.internal import run_request

    for attempt in range(unavailable_retries() + 1):
        status, body_out = await run_request(api_key, endpoint, body, priority=priority, source=source,
                                             usage_sink=usage_sink)
        if status != 503 or attempt == unavailable_retries():
            return status, body_out
        await asyncio.sleep(min(30.0, 2.0 * 2**attempt))
    return status, body_out
