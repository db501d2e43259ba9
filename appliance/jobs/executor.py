"""Runs one OpenAI request body on behalf of a batch line or an async request, through the gateway's own path
(validation, routing to a replica, usage metering, the tenant's monthly token budget) at a lower priority than
live traffic."""
from __future__ import annotations

from typing import Any

BATCH_PRIORITY = 10  # live traffic runs at priority 0; the engine's priority policy serves lower numbers first
ASYNC_PRIORITY = 5


async def execute(api_key, endpoint: str, body: dict[str, Any], priority: int) -> tuple[int, dict[str, Any]]:
    """(HTTP status, response body or {"error": {...}}) for one non-streaming request."""
    from appliance.gateway.services import run_request

    return await run_request(api_key, endpoint, body, priority=priority, source="batch")
