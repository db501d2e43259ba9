"""Queueing instead of dropping, through the official openai client against the live gateway: a tenant at its
concurrency limit has its requests wait in line (FIFO) up to its max_queue_wait_s, and only those still waiting at
that bound get a 429; the wait is a metric and part of each usage row; a client that leaves while queued frees its
place at once."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import World, committed, make_key
from .test_disconnect import wait_for

pytestmark = pytest.mark.django_db

# ignore_eos: every request generates exactly this many tokens, so each holds its slot for a similar, long time
LONG = {"max_tokens": 400, "extra_body": {"ignore_eos": True}}  # ~0.4 s each on a 2-core Xeon


def queue_count(world: World, outcome: str) -> float:
    text = world.appliance.metrics()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "appliance_gateway_queue_seconds_count" and s.labels.get("outcome") == outcome)


def tenant_client(world: World, max_concurrency: int, max_queue_wait_s: float) -> openai.OpenAI:
    _, key = committed(make_key, "queued", ["tiny"], max_concurrency=max_concurrency)
    from appliance.tenancy.models import APIKey, Tenant

    def set_wait():
        Tenant.objects.filter(api_keys__prefix=APIKey.objects.order_by("-id").first().prefix).update(
            max_queue_wait_s=max_queue_wait_s)
    committed(set_wait)
    return openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60)


def stream(client: openai.OpenAI, model: str, prompt: str = "once upon a time") -> tuple[str, int]:
    """Stream one completion; (request id, completion tokens), or the refusal raised."""
    rid, tokens = "", 0
    for chunk in client.completions.create(model=model, prompt=prompt, stream=True,
                                           stream_options={"include_usage": True}, **LONG):
        rid = chunk.id
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return rid, tokens


def six_at_once(client: openai.OpenAI, model: str) -> list:
    barrier = threading.Barrier(6)

    def one(_):
        barrier.wait()
        try:
            return stream(client, model)
        except openai.RateLimitError as exc:
            return exc

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(one, range(6)))


def usage_rows(ids: list[str]):
    from appliance.tenancy.models import UsageRecord

    assert wait_for(lambda: UsageRecord.objects.filter(request_id__in=ids).count() == len(ids))
    return list(UsageRecord.objects.filter(request_id__in=ids))


def test_six_streams_over_a_limit_of_two_all_finish_when_the_wait_allows_it(world: World):
    client = tenant_client(world, max_concurrency=2, max_queue_wait_s=30)
    admitted_before = queue_count(world, "admitted")
    results = six_at_once(client, world.model)
    assert all(isinstance(r, tuple) and r[1] == LONG["max_tokens"] for r in results), results
    assert queue_count(world, "admitted") - admitted_before == 4  # the four past the limit waited, then ran
    rows = usage_rows([r[0] for r in results])
    waits = sorted(row.queue_ms for row in rows)
    assert waits[:2] == [0, 0] and all(w > 0 for w in waits[2:]), waits
    assert all(row.status_code == 200 for row in rows)


def test_past_the_wait_bound_exactly_the_waiters_get_429(world: World):
    client = tenant_client(world, max_concurrency=2, max_queue_wait_s=0.05)
    refused_before = queue_count(world, "refused")
    results = six_at_once(client, world.model)
    finished = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(finished) == 2 and len(refused) == 4, results
    latencies = [row.latency_ms for row in usage_rows([r[0] for r in finished])]
    assert min(latencies) > 200, f"the admitted requests ({latencies} ms) must outlast the 50 ms bound by far"
    assert all(r.code == "rate_limit_exceeded" and r.response.headers["retry-after"] == "1" for r in refused)
    assert queue_count(world, "refused") - refused_before == 4
    rows = usage_rows([r.response.headers["x-request-id"] for r in refused])
    assert all(row.status_code == 429 and 50 <= row.queue_ms < 1000 for row in rows), \
        [(row.status_code, row.queue_ms) for row in rows]


def hold_slot(tenant_id: int, limit: int):
    """Take one of the tenant's concurrency slots as another gateway process would (the same Redis script)."""
    import asyncio

    import redis.asyncio as aioredis
    from django.conf import settings

    from appliance.gateway.quota_redis import RedisQuotaBackend
    from appliance.gateway.quotas import Limits, Scope

    scopes = [Scope("tenant", tenant_id, Limits(max_concurrency=limit)), Scope("key", -tenant_id, Limits())]

    async def admit():
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            return await RedisQuotaBackend(client).admit(scopes, f"holder-{tenant_id}", 1)
        finally:
            await client.aclose()

    async def finish(ticket):
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            await RedisQuotaBackend(client).finish(ticket, 1)
        finally:
            await client.aclose()

    decision = asyncio.run(admit())
    assert decision.admitted
    return lambda: asyncio.run(finish(decision.ticket))


def test_a_client_leaving_the_queue_lets_the_next_waiter_in_first(world: World):
    import redis
    from django.conf import settings

    from appliance.gateway import keys
    from appliance.tenancy.models import APIKey, UsageRecord

    client = tenant_client(world, max_concurrency=1, max_queue_wait_s=30)
    tenant_id = APIKey.objects.order_by("-id").first().tenant_id
    queue_key = keys.quota_queue("tenant", tenant_id)
    r = redis.Redis.from_url(settings.REDIS_URL)
    left_before = queue_count(world, "left")
    release = hold_slot(tenant_id, 1)  # the only slot, held by a request in "another gateway process"

    def leaver():
        body = {"model": world.model, "prompt": "x", "stream": True, "max_tokens": 5}
        with pytest.raises(httpx.ReadTimeout):  # waits for the response headers while queued, then gives up
            httpx.post(f"{world.appliance.v1}/completions", json=body, timeout=1.0,
                       headers={"Authorization": f"Bearer {client.api_key}"})

    with ThreadPoolExecutor(2) as pool:
        gone = pool.submit(leaver)
        assert wait_for(lambda: r.zcard(queue_key) == 1, 5)
        behind = pool.submit(stream, client, world.model)
        assert wait_for(lambda: r.zcard(queue_key) == 2, 5)
        gone.result()
        assert wait_for(lambda: r.zcard(queue_key) == 1, 1), "the departed client's place is freed at once"
        time.sleep(0.3)
        released_at = time.monotonic()
        release()
        behind_id, tokens = behind.result()
    assert tokens == LONG["max_tokens"]
    assert queue_count(world, "left") - left_before == 1
    row = UsageRecord.objects.get(request_id=behind_id) if wait_for(
        lambda: UsageRecord.objects.filter(request_id=behind_id).exists()) else None
    # admitted as soon as the slot came free (found by its poll, the release being in another process), not after
    # the departed client would have had its turn
    assert row.status_code == 200 and row.queue_ms > 1000
    assert row.latency_ms - row.queue_ms < (time.monotonic() - released_at) * 1000 + 100
    assert wait_for(lambda: UsageRecord.objects.filter(status_code=499, api_key__tenant_id=tenant_id,
                                                       queue_ms__gt=0).count() == 1)
