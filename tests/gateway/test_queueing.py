"""Waiting for a concurrency slot (queueing.py) against the real Redis script and the in-process fallback: FIFO per
tenant, never more admitted than the limit, a 429 past the wait bound, a waiter that leaves frees its place."""
from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from appliance.gateway import keys, queueing
from appliance.gateway.quota_local import LocalQuotaBackend
from appliance.gateway.quota_redis import RedisQuotaBackend
from appliance.gateway.quotas import Limits, Queue, Scope
from appliance.gateway.resp import ScriptClient


@pytest.fixture(params=["redis", "local"])
async def backends(request):
    """Two backends admitting for the same tenant: two gateway processes (Redis), or one process (local)."""
    if request.param == "local":
        local = LocalQuotaBackend()
        yield local, local
        return
    clients = [aioredis.from_url(settings.REDIS_URL) for _ in range(2)]
    lean = [ScriptClient(settings.REDIS_URL) for _ in range(2)]
    yield tuple(RedisQuotaBackend(c, s) for c, s in zip(clients, lean))
    for c, s in zip(clients, lean):
        s.close()
        await c.aclose()


def tenant(max_concurrency: int) -> list[Scope]:
    base = random.randrange(10**9)
    return [Scope("tenant", base, Limits(max_concurrency=max_concurrency)), Scope("key", base + 1, Limits())]


async def admit_or_wait(backend, scopes, request_id, queue):
    decision = await backend.admit(scopes, request_id, 1, None, queue)
    if decision.queued:
        decision = await queueing.wait(backend, scopes, request_id, 1, None, queue)
    return decision


async def test_waiters_are_admitted_in_arrival_order_never_past_the_limit(backends):
    scopes = tenant(2)
    queue = Queue(scopes[0], max_wait_s=10)
    running, peak, order = 0, 0, []

    async def request(k: int) -> None:
        nonlocal running, peak
        backend = backends[k % 2]
        decision = await admit_or_wait(backend, scopes, f"r{k}-{uuid.uuid4().hex}", queue)
        assert decision.admitted
        running += 1
        peak = max(peak, running)
        order.append(k)
        await asyncio.sleep(0.15)
        running -= 1
        await backend.finish(decision.ticket, 1)

    tasks = []
    for k in range(6):
        tasks.append(asyncio.create_task(request(k)))
        await asyncio.sleep(0.02)  # arrival order 0..5
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    assert peak == 2


async def test_a_waiter_past_its_bound_gets_a_concurrency_refusal_and_leaves_the_queue(backends):
    backend = backends[0]
    scopes = tenant(1)
    queue = Queue(scopes[0], max_wait_s=0.3)
    held = await backend.admit(scopes, "holder", 1, None, queue)
    assert held.admitted
    started = time.monotonic()
    refused = await admit_or_wait(backend, scopes, "waiter", queue)
    waited = time.monotonic() - started
    assert not refused.admitted and refused.reason == "concurrency" and refused.headers["retry-after"] == "1"
    assert 0.3 <= waited < 0.6 and refused.waited_s == pytest.approx(waited, abs=0.05)
    await backend.finish(held.ticket, 1)
    assert (await backend.admit(scopes, "next", 1, None, queue)).admitted  # no stale ticket ahead of it


async def test_a_waiter_that_goes_away_lets_the_one_behind_it_in_first(backends):
    backend = backends[0]
    scopes = tenant(1)
    queue = Queue(scopes[0], max_wait_s=10)
    held = await backend.admit(scopes, "holder", 1, None, queue)
    gone = asyncio.create_task(admit_or_wait(backend, scopes, "gone", queue))
    await asyncio.sleep(0.05)
    behind = asyncio.create_task(admit_or_wait(backend, scopes, "behind", queue))
    await asyncio.sleep(0.05)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    if isinstance(backend, RedisQuotaBackend):
        waiting = await backend.redis.zrange(keys.quota_queue("tenant", scopes[0].id), 0, -1)
        assert waiting == [b"behind"]
    await backend.finish(held.ticket, 1)
    decision = await asyncio.wait_for(behind, 1)
    assert decision.admitted


async def test_without_a_wait_bound_the_limit_refuses_at_once(backends):
    backend = backends[0]
    scopes = tenant(1)
    assert (await backend.admit(scopes, "one", 1)).admitted
    refused = await backend.admit(scopes, "two", 1)
    assert not refused.admitted and not refused.queued and refused.reason == "concurrency"
