"""The gateway's refreshing cache: one load for concurrent misses, background reload past half-life, never stale
past the TTL."""
from __future__ import annotations

import asyncio

import pytest

from appliance.gateway.cache import RefreshingCache

TTL = 0.4


class Source:
    def __init__(self) -> None:
        self.value = "v1"
        self.loads = 0
        self.fail = False

    async def load(self):
        self.loads += 1
        await asyncio.sleep(0.02)
        if self.fail:
            raise RuntimeError("database down")
        return self.value


async def test_concurrent_misses_share_one_load():
    cache, src = RefreshingCache("t", lambda: TTL), Source()
    assert await asyncio.gather(*[cache.get("k", src.load) for _ in range(20)]) == ["v1"] * 20
    assert src.loads == 1


async def test_a_fresh_entry_is_served_without_loading():
    cache, src = RefreshingCache("t", lambda: TTL), Source()
    await cache.get("k", src.load)
    src.value = "v2"
    assert await cache.get("k", src.load) == "v1"
    await asyncio.sleep(0.05)
    assert src.loads == 1


async def test_past_half_life_a_hit_returns_at_once_and_reloads_in_the_background():
    cache, src = RefreshingCache("t", lambda: TTL), Source()
    await cache.get("k", src.load)
    src.value = "v2"
    await asyncio.sleep(TTL * 0.6)
    assert await asyncio.wait_for(cache.get("k", src.load), 0.01) == "v1"  # no wait for the database
    await asyncio.sleep(0.05)
    assert src.loads == 2
    assert await cache.get("k", src.load) == "v2"


async def test_an_expired_entry_is_reloaded_before_it_is_returned():
    cache, src = RefreshingCache("t", lambda: TTL), Source()
    await cache.get("k", src.load)
    src.value = "v2"
    await asyncio.sleep(TTL * 1.1)
    assert await cache.get("k", src.load) == "v2"


async def test_a_failed_background_reload_keeps_the_entry_until_it_expires_then_the_error_surfaces():
    cache, src = RefreshingCache("t", lambda: TTL), Source()
    await cache.get("k", src.load)
    src.fail = True
    await asyncio.sleep(TTL * 0.6)
    assert await cache.get("k", src.load) == "v1"
    await asyncio.sleep(TTL * 0.5)
    with pytest.raises(RuntimeError, match="database down"):
        await cache.get("k", src.load)


async def test_none_is_not_cached_when_asked_not_to():
    cache, src = RefreshingCache("t", lambda: TTL, cache_none=False), Source()
    src.value = None
    assert await cache.get("k", src.load) is None
    src.value = "now here"
    assert await cache.get("k", src.load) == "now here"
    assert src.loads == 2


async def test_a_cache_that_tolerates_staleness_answers_at_once_after_a_quiet_spell_and_reloads():
    cache, src = RefreshingCache("t", lambda: TTL, stale_s=lambda: 10 * TTL), Source()
    await cache.get("k", src.load)
    src.value = "v2"
    await asyncio.sleep(TTL * 1.5)  # expired, within the stale allowance
    assert await asyncio.wait_for(cache.get("k", src.load), 0.01) == "v1"
    await asyncio.sleep(0.05)
    assert await cache.get("k", src.load) == "v2"
    await asyncio.sleep(TTL * 12)  # past the allowance too: wait for the database
    src.value = "v3"
    assert await cache.get("k", src.load) == "v3"
