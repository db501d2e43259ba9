"""Quota admission against the real Redis (Lua) and the in-process fallback: the same rules, exact under races."""
from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from appliance.gateway.quota_local import LocalQuotaBackend
from appliance.gateway.quota_redis import RedisQuotaBackend
from appliance.gateway.quotas import Limits, Scope
from appliance.gateway.resp import ScriptClient


@pytest.fixture(params=["redis", "redis-py scripts", "local"])
async def backend(request):
    if request.param == "local":
        yield LocalQuotaBackend()
        return
    client = aioredis.from_url(settings.REDIS_URL)
    lean = ScriptClient(settings.REDIS_URL) if request.param == "redis" else None
    yield RedisQuotaBackend(client, lean)
    if lean is not None:
        lean.close()
    await client.aclose()


def scopes(tenant: Limits = Limits(), key: Limits = Limits()) -> list[Scope]:
    base = random.randrange(10**9)
    return [Scope("tenant", base, tenant), Scope("key", base + 1, key)]


def rid() -> str:
    return uuid.uuid4().hex


async def test_fifty_concurrent_requests_against_rpm_10_admit_exactly_10(backend):
    s = scopes(key=Limits(rpm=10))
    decisions = await asyncio.gather(*[backend.admit(s, rid(), 5) for _ in range(50)])
    admitted = [d for d in decisions if d.admitted]
    assert len(admitted) == 10
    refused = [d for d in decisions if not d.admitted]
    assert all(d.reason == "requests" and d.scope == "key" for d in refused)
    assert all(int(d.headers["retry-after"]) >= 1 for d in refused)
    assert refused[0].headers["x-ratelimit-limit-requests"] == "10"
    assert refused[0].headers["x-ratelimit-remaining-requests"] == "0"


async def test_tenant_limit_applies_across_its_keys(backend):
    tenant_id = random.randrange(10**9)
    key_a = [Scope("tenant", tenant_id, Limits(rpm=3)), Scope("key", tenant_id + 1, Limits())]
    key_b = [Scope("tenant", tenant_id, Limits(rpm=3)), Scope("key", tenant_id + 2, Limits())]
    results = [(await backend.admit(key_a if i % 2 else key_b, rid(), 1)) for i in range(6)]
    assert [d.admitted for d in results] == [True, True, True, False, False, False]
    assert results[-1].scope == "tenant"


async def test_refused_request_counts_against_no_scope(backend):
    s = scopes(tenant=Limits(rpm=100), key=Limits(rpm=1))
    assert (await backend.admit(s, rid(), 1)).admitted
    refused = await backend.admit(s, rid(), 1)
    assert not refused.admitted and refused.scope == "key"
    # the tenant saw one request, not two
    other_key = [s[0], Scope("key", s[1].id + 7, Limits())]
    ok = await backend.admit(other_key, rid(), 1)
    assert ok.headers["x-ratelimit-remaining-requests"] == "98"  # 100 - the first - this one


async def test_tokens_are_reserved_then_reconciled_to_actual_usage(backend):
    s = scopes(key=Limits(tpm=100))
    first = await backend.admit(s, rid(), 80)
    assert first.admitted and first.headers["x-ratelimit-remaining-tokens"] == "20"
    assert not (await backend.admit(s, rid(), 30)).admitted
    await backend.finish(first.ticket, actual_tokens=10)  # the engine used only 10
    second = await backend.admit(s, rid(), 30)
    assert second.admitted and second.headers["x-ratelimit-remaining-tokens"] == "60"


async def test_concurrency_slot_is_released_on_finish(backend):
    s = scopes(tenant=Limits(max_concurrency=2))
    a, b = await backend.admit(s, rid(), 1), await backend.admit(s, rid(), 1)
    refused = await backend.admit(s, rid(), 1)
    assert a.admitted and b.admitted and not refused.admitted and refused.reason == "concurrency"
    await backend.finish(a.ticket, 1)
    assert (await backend.admit(s, rid(), 1)).admitted


@pytest.fixture
def closes_gateway_connections():
    yield
    from appliance.gateway.db import close_connections

    close_connections()


@pytest.mark.django_db(transaction=True)
async def test_monthly_budget_counts_actual_tokens(backend, closes_gateway_connections):
    s = scopes(key=Limits(monthly_tokens=100))
    d = await backend.admit(s, rid(), 90)
    await backend.finish(d.ticket, 95)
    refused = await backend.admit(s, rid(), 10)
    assert not refused.admitted and refused.reason == "monthly_tokens"
    assert int(refused.headers["retry-after"]) > 0
    assert (await backend.admit(s, rid(), 5)).admitted


async def test_unlimited_scopes_send_no_rate_limit_headers(backend):
    d = await backend.admit(scopes(), rid(), 1000)
    assert d.admitted and d.headers == {}


async def test_admission_picks_the_least_loaded_replica_and_finish_releases_it():
    from appliance.gateway import keys
    from appliance.gateway.quotas import Pick

    client = aioredis.from_url(settings.REDIS_URL)
    try:
        backend = RedisQuotaBackend(client, ScriptClient(settings.REDIS_URL))
        a, b = random.randrange(10**9), random.randrange(10**9)
        await client.set(keys.replica_outstanding(a), 3)
        pick = Pick([a, b], deployment_id=a)
        first = await backend.admit(scopes(), rid(), 1, pick)
        second = await backend.admit(scopes(), rid(), 1, pick)
        assert first.replica_id == b and second.replica_id == b
        assert int(await client.get(keys.replica_outstanding(b))) == 2
        assert await client.get(keys.deployment_last_request(a)) is not None
        await backend.finish(first.ticket, 1)
        await backend.finish(second.ticket, 1)
        assert int(await client.get(keys.replica_outstanding(b))) == 0
        refused = await backend.admit(scopes(key=Limits(rpm=0)), rid(), 1, pick)
        assert not refused.admitted and refused.replica_id is None
        assert int(await client.get(keys.replica_outstanding(b))) == 0
    finally:
        await client.aclose()


def test_ample_room_is_half_of_what_the_tightest_limit_has_left():
    from appliance.gateway.quotas import SPECULATION_CAP, ScopeUsage, decide

    s = scopes(tenant=Limits(rpm=100), key=Limits(tpm=1000, max_concurrency=9))
    fresh = ScopeUsage(0, -1, 0, -1, 0, 0)
    used = ScopeUsage(requests=10, requests_oldest=1, tokens=400, tokens_oldest=1, inflight=2, month_tokens=0)
    # tenant rpm: (100 - 11) // 2 = 44; key tpm: (1000 - 400 - 50) // 50 // 2 = 5; key concurrency: (9 - 3) // 2 = 3
    assert decide(s, [used, used], 0, 0, 100, None, 50).ample == 3
    assert decide(scopes(), [fresh, fresh], 0, 0, 100, None, 50).ample == SPECULATION_CAP  # unlimited
    assert decide(s, [used, used], 2, 3, 100, None, 50).ample == 0  # refused
    nearly = ScopeUsage(98, 1, 0, -1, 0, 0)
    assert decide(scopes(key=Limits(rpm=100)), [fresh, nearly], 0, 0, 100, None, 1).ample == 0


def test_headroom_grants_at_most_the_ample_room_and_only_for_its_ttl():
    import time

    from appliance.gateway.quotas import Decision, Headroom

    room = Headroom(ttl_s=lambda: 0.2)
    assert not room.take(7)  # never admitted here: wait for admission
    room.note(7, Decision(True, ample=2))
    assert [room.take(7), room.take(7), room.take(7)] == [True, True, False]
    room.note(7, Decision(True, ample=5))
    room.note(7, Decision(False))  # a refusal takes it all back
    assert not room.take(7)
    room.note(7, Decision(True, ample=5))
    time.sleep(0.25)
    assert not room.take(7)
    off = Headroom(ttl_s=lambda: 0)
    off.note(7, Decision(True, ample=5))
    assert not off.take(7)


async def test_admission_keeps_every_key_it_writes_expiring():
    """Expiries are refreshed once per second per scope, but a key created later in that second (an in-flight
    set emptied by finish and started again, another deployment's counters) gets its expiry too."""
    from appliance.gateway import keys
    from appliance.gateway.quotas import Pick

    client = aioredis.from_url(settings.REDIS_URL)
    try:
        backend = RedisQuotaBackend(client, ScriptClient(settings.REDIS_URL))
        s = scopes(key=Limits(max_concurrency=5))
        d1, d2, r1, r2 = (random.randrange(10**9) for _ in range(4))
        first = await backend.admit(s, rid(), 1, Pick([r1], d1))
        await backend.finish(first.ticket, 1)  # the in-flight set is empty again, so Redis deletes it
        second = await backend.admit(s, rid(), 1, Pick([r2], d2))  # most likely the same second
        assert second.admitted
        for scope in s:
            for name in (keys.quota_requests(scope.kind, scope.id), keys.quota_tokens(scope.kind, scope.id),
                         keys.quota_inflight(scope.kind, scope.id)):
                assert await client.ttl(name) > 0, name
        for name in (keys.replica_outstanding(r2), keys.deployment_last_request(d2)):
            assert await client.ttl(name) > 0, name
    finally:
        await client.aclose()
