"""One asyncio Redis client per event loop (connections belong to the loop that opened them), and one lean script
client (resp.py) per loop for the Lua scripts every request runs."""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from django.conf import settings

from .resp import ScriptClient

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


_script_clients: dict[int, tuple[asyncio.AbstractEventLoop, ScriptClient]] = {}


def get_script_client() -> ScriptClient | aioredis.Redis:
    """What runs the hot-path Lua scripts: the lean client, or redis-py's for a URL it does not speak (rediss://)."""
    if not settings.REDIS_URL.startswith(("redis://", "unix://")):
        return get_redis()
    loop = asyncio.get_running_loop()
    entry = _script_clients.get(id(loop))
    if entry is None or entry[0] is not loop:
        for key in [k for k, (lp, _) in _script_clients.items() if lp.is_closed()]:
            del _script_clients[key]
        entry = (loop, ScriptClient(settings.REDIS_URL))
        _script_clients[id(loop)] = entry
    return entry[1]
