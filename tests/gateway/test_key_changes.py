"""A change to a key or its tenant reaches a running gateway at once (invalidation.py over Redis pub/sub), not
after its auth cache's TTL: here a gateway that caches callers for 300 s, so only the announcement can explain
the change being seen within seconds."""
from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx
import pytest

from appliance.gateway.cache import RefreshingCache

from .conftest import Appliance, World, committed, make_key, start_gateway, stop_gateway

pytestmark = pytest.mark.django_db
SEEN_WITHIN_S = 3.0


@pytest.fixture(scope="module")
def long_cache_gateway(world, tmp_path_factory) -> Appliance:
    gateway = start_gateway(tmp_path_factory.mktemp("gateway-long-cache"), GATEWAY_AUTH_CACHE_S="300")
    yield gateway
    stop_gateway(gateway)


def status(gateway: Appliance, key: str, model: str) -> int:
    response = httpx.post(f"{gateway.v1}/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                          json={"model": model, "prompt": "x", "max_tokens": 1})
    return response.status_code


def seen_within(gateway: Appliance, key: str, model: str, expected: int) -> float:
    """Seconds until the gateway answers `expected` for this key (fails after SEEN_WITHIN_S)."""
    started = time.monotonic()
    while (got := status(gateway, key, model)) != expected:
        assert got == 200, got
        assert time.monotonic() - started < SEEN_WITHIN_S, f"still {got} after {SEEN_WITHIN_S}s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_revoked_key_stops_working_at_once(world: World, long_cache_gateway: Appliance):
    from appliance.tenancy.services import revoke_api_key

    key, plaintext = committed(make_key, "revoke-now", ["tiny"])
    assert status(long_cache_gateway, plaintext, world.model) == 200  # cached now, for 300 s
    committed(revoke_api_key, key)
    seen_within(long_cache_gateway, plaintext, world.model, 401)


def test_a_change_made_while_the_subscription_is_down_is_not_missed(world: World, long_cache_gateway: Appliance):
    import redis
    from django.conf import settings

    from appliance.tenancy.services import revoke_api_key

    key, plaintext = committed(make_key, "resubscribe", ["tiny"])
    assert status(long_cache_gateway, plaintext, world.model) == 200
    assert redis.Redis.from_url(settings.REDIS_URL).client_kill_filter(_type="pubsub") >= 1  # the gateway's
    committed(revoke_api_key, key)  # announced before the gateway has resubscribed (it waits 1 s)
    seen_within(long_cache_gateway, plaintext, world.model, 401)  # it forgets its callers when it resubscribes


def test_a_suspended_tenant_and_a_narrowed_model_list_apply_at_once(world: World, long_cache_gateway: Appliance):
    from appliance.tenancy.models import Tenant

    key, plaintext = committed(make_key, "narrow", ["tiny"])
    assert status(long_cache_gateway, plaintext, world.model) == 200
    committed(lambda: Tenant.objects.get(pk=key.tenant_id).allowed_models.clear())
    seen_within(long_cache_gateway, plaintext, world.model, 404)

    other, other_plain = committed(make_key, "suspend", ["tiny"])
    assert status(long_cache_gateway, other_plain, world.model) == 200

    def suspend():
        tenant = Tenant.objects.get(pk=other.tenant_id)
        tenant.is_active = False
        tenant.save()

    committed(suspend)
    seen_within(long_cache_gateway, other_plain, world.model, 401)


def test_a_cached_key_stops_at_its_expiry(world: World, long_cache_gateway: Appliance):
    from django.utils import timezone

    from appliance.tenancy.services import create_api_key

    def expiring():
        key, _ = make_key("expiring", ["tiny"])
        expiring, plaintext = create_api_key(key.tenant, expires_at=timezone.now() + dt.timedelta(seconds=3))
        return plaintext, expiring.expires_at.timestamp()

    plaintext, expires_at = committed(expiring)
    assert status(long_cache_gateway, plaintext, world.model) == 200  # cached now, for 300 s
    time.sleep(max(0.0, expires_at - time.time()) + 0.1)
    assert status(long_cache_gateway, plaintext, world.model) == 401


async def test_a_load_in_flight_when_the_cache_is_cleared_is_not_cached():
    cache: RefreshingCache[str] = RefreshingCache("test", lambda: 300)
    release = asyncio.Event()

    async def stale() -> str:
        await release.wait()
        return "read before the change"

    loading = asyncio.ensure_future(cache.get("k", stale))
    await asyncio.sleep(0)
    cache.clear()
    release.set()
    assert await loading == "read before the change"  # the request that was waiting gets its answer...

    async def fresh() -> str:
        return "read after the change"

    assert await cache.get("k", fresh) == "read after the change"  # ...but it was not cached
