"""One asyncio Redis client per event loop (connections belong to the loop that opened them)."""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from django.conf import settings

_clients: dict[int, tuple[asyncio.AbstractEventLoop, aioredis.Redis]] = {}


def get_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    entry = _clients.get(id(loop))
    if entry is None or entry[0] is not loop:
        for key in [k for k, (lp, _) in _clients.items() if lp.is_closed()]:
            del _clients[key]
        entry = (loop, aioredis.from_url(settings.REDIS_URL, max_connections=256))
        _clients[id(loop)] = entry
    return entry[1]
