"""Requests the appliance makes on a tenant's behalf (a batch line, an async request), not over HTTP.

``run_request`` takes the same path as a live non-streaming request: the key must still be valid, the body goes
through ``params.parse``, the model through routing and the key's model access (404 identical to an unknown
model), the engine call through ``relay.Call`` (waiting for a cold start, retrying a refused replica), and the
usage row is written with the engine's token counts. What differs:

- Per-minute limits (RPM, TPM) and concurrency are not applied and not counted: a batch paces itself and must not
  be throttled into failure, nor eat into the tenant's live-traffic rate limits.
- The monthly token budgets of the tenant and the key are applied and counted, in the same Redis counters the
  live path uses (``keys.quota_month``): a request is refused with 429 ``insufficient_quota`` when its estimate
  (prompt + max_tokens) would pass either budget, and the counter is reconciled with the real tokens after.
- The engine request carries ``priority`` (live traffic is 0; a lower value runs first on replicas started with
  ``scheduling_policy=priority``; under FCFS it has no effect).
- The request id (the response's ``id`` and the UsageRecord's ``request_id``) is ``chatcmpl-<source>-<hex>`` /
  ``cmpl-<source>-<hex>``, so usage rows say where a request came from.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from appliance.guardrails import gate as guardrails

from . import keys
from .auth import Caller
from .db import run_db
from .errors import APIError, invalid, model_not_found, unauthorized
from .params import parse
from .quotas import Decision, Scope, month_of, month_tokens_used, seconds_to_next_month
from .relay import Call
from .routing import router
from .usage import Usage, record

ENDPOINTS = {"/v1/completions": "completions", "/v1/chat/completions": "chat"}
MONTH_TTL_S = 40 * 86400


def _caller(api_key: Any) -> Caller | None:
    from appliance.tenancy.models import APIKey
    from django.utils import timezone

    key_id = getattr(api_key, "pk", api_key)
    key = APIKey.objects.select_related("tenant").filter(pk=key_id).first() if key_id is not None else None
    if key is None or key.revoked_at is not None or not key.tenant.is_active:
        return None
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return None
    return Caller.of(key)


class _JobCall(Call):
    def __init__(self, *args: Any, priority: int) -> None:
        super().__init__(*args)
        self.priority = priority

    def generate_request(self):
        request = super().generate_request()
        request.priority = self.priority
        return request


_RESERVE_LUA = """
local estimate = tonumber(ARGV[1])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + i])
  if limit >= 0 then
    if redis.call('EXISTS', KEYS[i]) == 0 then return -i end
    if tonumber(redis.call('GET', KEYS[i])) + estimate > limit then return i end
  end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], estimate)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[#ARGV]))
end
return 0
"""


@dataclass
class Reservation:
    month_keys: list[str]
    estimate: int


class MonthlyBudget:
    """The monthly token budgets alone: reserve an estimate, then settle with the real count."""

    def __init__(self) -> None:
        self._scripts: dict[int, tuple[Any, Any]] = {}

    async def reserve(self, caller: Caller, estimate: int) -> Reservation | None:
        """Count the estimate against the budgets; APIError 429 insufficient_quota if it would pass one."""
        now = int(time.time())
        scopes = caller.scopes()
        if not settings.REDIS_URL:
            return await self._reserve_db(scopes, estimate, now)
        from .redis_client import get_redis

        client = get_redis()
        entry = self._scripts.get(id(client))
        if entry is None or entry[0] is not client:
            entry = self._scripts[id(client)] = (client, client.register_script(_RESERVE_LUA))
        script = entry[1]
        month = month_of(now)
        names = [keys.quota_month(s.kind, s.id, month) for s in scopes]
        limits = [-1 if s.limits.monthly_tokens is None else int(s.limits.monthly_tokens) for s in scopes]
        for _ in range(2):
            failed = int(await script(keys=names, args=[estimate, *limits, MONTH_TTL_S]))
            if failed >= 0:
                break
            scope = scopes[-failed - 1]  # no counter yet this month: seed it from the usage rows, as the gateway does
            await client.set(names[-failed - 1], await month_tokens_used(scope), nx=True, ex=MONTH_TTL_S)
        if failed > 0:
            raise _over_budget(scopes[failed - 1], now)
        if failed < 0:
            raise APIError(503, "The token budget could not be checked; retry shortly.", code="budget_unavailable")
        return Reservation(names, estimate)

    async def _reserve_db(self, scopes: list[Scope], estimate: int, now: int) -> None:
        for scope in scopes:
            if scope.limits.monthly_tokens is not None:
                if await month_tokens_used(scope) + estimate > scope.limits.monthly_tokens:
                    raise _over_budget(scope, now)
        return None

    async def settle(self, reservation: Reservation | None, actual_tokens: int) -> None:
        if reservation is None:
            return
        from .redis_client import get_redis

        delta = int(actual_tokens) - reservation.estimate
        if delta:
            client = get_redis()
            for name in reservation.month_keys:
                await client.incrby(name, delta)


def _over_budget(scope: Scope, now: int) -> APIError:
    owner = "your organization" if scope.kind == "tenant" else "this API key"
    return APIError(429, f"The monthly token budget of {owner} is used up.", code="insufficient_quota",
                    type="insufficient_quota", headers={"retry-after": str(seconds_to_next_month(now))})


budget = MonthlyBudget()


async def run_request(api_key: Any, endpoint: str, body: dict[str, Any], *, priority: int,
                      source: str, usage_sink: list[Usage] | None = None) -> tuple[int, dict[str, Any]]:
    """Run one non-streaming OpenAI request as the key `api_key` (an APIKey or its id).

    Returns (HTTP status, the response body or ``{"error": {...}}``) exactly as the live endpoint would answer.
    With `usage_sink`, the request's usage row is appended there for the caller to write (usage.record).
    """
    started = time.perf_counter()
    kind = ENDPOINTS.get(endpoint)
    prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
    request_id = f"{prefix}{source}-{uuid.uuid4().hex}"
    caller = None
    model = ""
    reservation = None
    try:
        if kind is None:
            raise invalid(f"Unsupported endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}.", param="url")
        caller = await run_db(_caller, api_key)
        if caller is None:
            raise unauthorized("The API key that submitted this request has been revoked or has expired.")
        req = parse(kind, json.dumps(body).encode())
        if req.stream:
            raise invalid("'stream' is not supported here: the response is stored whole.", param="stream")
        route = await router.route(req.model)
        if route is None or route.model_name not in caller.allowed_models:
            raise model_not_found(req.model)
        model = req.model
        guard = None
        if caller.guardrail is not None or route.guardrail is not None:  # the same guardrails as the live API
            guard = await guardrails.check(req, caller, route, request_id)
        reservation = await budget.reserve(caller, req.estimate_tokens())
    except APIError as exc:
        if caller is not None:
            await record(Usage(caller.tenant_id, caller.key_id, model, request_id, kind or endpoint, exc.status,
                               latency_s=time.perf_counter() - started), usage_sink)
        return exc.status, exc.body()
    call = _JobCall(caller, req, route, Decision(True), request_id, started, priority=priority)
    call.usage_sink = usage_sink
    call.guard = guard
    try:
        response = await call.run()
    finally:
        await budget.settle(reservation, call.prompt_tokens + call.completion_tokens)
    return response.status_code, json.loads(response.content)
