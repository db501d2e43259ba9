"""Early dispatch: a key admitted with ample room has its next requests sent to the replica while their admission is
in flight. Quotas stay exact, and a request refused after all is aborted at the engine and billed nothing."""
from __future__ import annotations

import asyncio
import re

import openai
import pytest

from .conftest import World, committed, make_key
from .test_disconnect import outstanding, wait_for

pytestmark = pytest.mark.django_db


def early_dispatches(world: World) -> dict[str, float]:
    text = world.appliance.metrics()
    found = dict(re.findall(r'^appliance_gateway_early_dispatch_total\{outcome="(\w+)"\} (\S+)$', text, re.M))
    return {outcome: float(found.get(outcome, 0)) for outcome in ("relayed", "aborted")}


def engine_aborts(world: World) -> float:
    with world.engine.client(timeout=10) as http:
        text = http.get("/metrics").text
    return sum(float(v) for v in re.findall(
        r'^appliance_engine_requests_finished_total\{[^}]*finish_reason="abort"[^}]*\} (\S+)$', text, re.M))


def limited_key(**quotas):
    """(key row, plaintext) of a new tenant's key with these quotas on the key."""
    from appliance.tenancy.services import create_api_key

    def make():
        key, _ = make_key("early", ["tiny"])
        return create_api_key(key.tenant, **quotas)

    return committed(make)


def test_sequential_requests_are_dispatched_early_while_there_is_room_and_quotas_stay_exact(world: World):
    _, key = limited_key(rpm=6)
    before = early_dispatches(world)
    client = openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60)
    statuses = []
    for _ in range(9):
        try:
            client.completions.create(model=world.model, prompt="hi", max_tokens=2)
            statuses.append(200)
        except openai.RateLimitError:
            statuses.append(429)
    assert statuses == [200] * 6 + [429] * 3
    after = early_dispatches(world)
    # Room after each admission, halved: 2, 2, 1, 1, 0 -> requests 2 to 5 go early; none is refused.
    assert after["relayed"] - before["relayed"] == 4
    assert after["aborted"] == before["aborted"]
    assert wait_for(lambda: world.engine.health()["in_flight"] == 0)
    assert outstanding(world.model) == 0


def test_a_request_refused_after_its_early_dispatch_is_aborted_at_the_engine_and_billed_nothing(world: World):
    """Another gateway process spends the key's room between two requests: the second goes out early on the
    strength of the first's admission, then admission refuses it."""
    from django.conf import settings

    import redis.asyncio as aioredis

    from appliance.gateway.quota_redis import RedisQuotaBackend
    from appliance.gateway.quotas import Limits, Scope
    from appliance.tenancy.models import UsageRecord

    row, key = limited_key(rpm=20)
    client = openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60)
    client.completions.create(model=world.model, prompt="hi", max_tokens=1)  # admitted with room for 9 more early

    async def elsewhere():  # the rest of the minute's requests, admitted by "another process"
        redis = aioredis.from_url(settings.REDIS_URL)
        try:
            other = RedisQuotaBackend(redis)
            scopes = [Scope("tenant", row.tenant_id, Limits()), Scope("key", row.id, Limits(rpm=20))]
            decisions = [await other.admit(scopes, f"elsewhere-{i}", 1) for i in range(19)]
            for d in decisions:
                await other.finish(d.ticket, 1)
            return sum(d.admitted for d in decisions)
        finally:
            await redis.aclose()

    assert asyncio.run(elsewhere()) == 19
    before, aborts = early_dispatches(world), engine_aborts(world)
    with pytest.raises(openai.RateLimitError) as refused:
        client.completions.create(model=world.model, prompt="a long story", max_tokens=300,
                                  extra_body={"ignore_eos": True})
    assert refused.value.body["code"] == "rate_limit_exceeded"
    assert early_dispatches(world)["aborted"] - before["aborted"] == 1
    assert wait_for(lambda: engine_aborts(world) == aborts + 1)  # stopped, not left to run its 300 tokens
    assert wait_for(lambda: (lambda h: h["in_flight"] == 0 and h["kv_blocks_used"] == 0)(world.engine.health())), \
        world.engine.health()
    assert outstanding(world.model) == 0
    request_id = refused.value.response.headers["x-request-id"]
    assert wait_for(lambda: UsageRecord.objects.filter(request_id=request_id).exists())
    usage = UsageRecord.objects.get(request_id=request_id)
    assert (usage.status_code, usage.prompt_tokens, usage.completion_tokens) == (429, 0, 0)
