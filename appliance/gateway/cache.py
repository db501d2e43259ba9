"""A small in-process cache for the gateway's lookups (API keys, routes) that keeps the database off the hot path.

An entry lives `ttl_s()`. Past half its life, a hit still returns it but also starts one background reload, so a key
in steady use is refreshed before it expires and no request waits for the database; an expired entry is reloaded
before it is returned (so `ttl_s` stays the bound on staleness), and concurrent misses share that one load. A cache
that can tolerate more (`stale_s`) returns an entry up to that long past its expiry while it reloads, so the first
requests after a quiet spell do not wait for the database either.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

log = logging.getLogger(__name__)
V = TypeVar("V")
MAX_ENTRIES = 10_000


class RefreshingCache(Generic[V]):
    def __init__(self, name: str, ttl_s: Callable[[], float], cache_none: bool = True,
                 stale_s: Callable[[], float] = lambda: 0.0) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.cache_none = cache_none
        self._entries: dict[Hashable, tuple[V, float, float]] = {}  # key -> (value, refresh_at, expires)
        self._loading: dict[Hashable, tuple[asyncio.AbstractEventLoop, asyncio.Task]] = {}
        self.generation = 0  # bumped by clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None:
            if entry[2] > now:
                if entry[1] <= now:
                    self._start(key, load)
                return entry[0]
            if entry[2] + self.stale_s() > now:
                self._start(key, load)
                return entry[0]
        return await self.reload(key, load)

    async def reload(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """Load now, whatever is cached (joining a load already in flight)."""
        return await asyncio.shield(self._start(key, load))

    def put(self, key: Hashable, value: V) -> None:
        if value is None and not self.cache_none:
            self._entries.pop(key, None)
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        ttl = self.ttl_s()
        now = time.monotonic()
        self._entries[key] = (value, now + ttl / 2, now + ttl)

    def pop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry, and every load in flight: what such a load read may predate the change that
        called for the clear, so it answers the requests that were waiting for it but is not cached."""
        self.generation += 1
        self._entries.clear()
        self._loading.clear()

    def _start(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> asyncio.Task:
        """The load in flight for `key` on this event loop, starting one if there is none."""
        loop = asyncio.get_running_loop()
        running = self._loading.get(key)
        if running is not None and running[0] is loop and not running[1].done():
            return running[1]
        task = loop.create_task(self._load(key, load, self.generation))
        task.add_done_callback(_retrieve)  # a background reload nobody awaits must not log "never retrieved"
        self._loading[key] = (loop, task)
        return task

    async def _load(self, key: Hashable, load: Callable[[], Awaitable[V]], generation: int) -> V:
        try:
            value = await load()
            if generation == self.generation:
                self.put(key, value)
            return value
        except Exception:
            entry = self._entries.get(key)
            if entry is not None and entry[2] > time.monotonic():
                log.warning("%s: background reload of a cached entry failed; keeping it until it expires",
                            self.name, exc_info=True)
            raise
        finally:
            running = self._loading.get(key)
            if running is not None and running[1] is asyncio.current_task():
                self._loading.pop(key, None)  # (clear() may run on another thread)


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
