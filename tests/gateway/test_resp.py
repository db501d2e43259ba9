"""The gateway's lean Redis script client against the real Redis: same replies as redis-py, pipelined callers each
get their own reply, and it recovers from a flushed script cache, a server error and a killed connection."""
from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import ConnectionError, ResponseError

from appliance.gateway.resp import ScriptClient

SHAPES = """
return {1, -7, 'text', {ARGV[1], {tonumber(ARGV[2]) * 2}}, false, redis.call('SET', KEYS[1], ARGV[1])}
"""
ECHO = "return ARGV[1]"
FAILS = "return redis.error_reply('ERR deliberate failure')"
SPIN = "local t = redis.call('TIME'); local until_us = t[1] * 1000000 + t[2] + tonumber(ARGV[1]); " \
       "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us; return 'spun'"


@pytest.fixture
async def pair():
    lean, ref = ScriptClient(settings.REDIS_URL), aioredis.from_url(settings.REDIS_URL)
    yield lean, ref
    lean.close()
    await ref.aclose()


def key() -> str:
    return f"test:resp:{random.randrange(10**12)}"


async def test_replies_decode_like_redis_py(pair):
    lean, ref = pair
    k = key()
    mine = await lean.register_script(SHAPES)(keys=[k], args=["héllo", 21])
    theirs = await ref.register_script(SHAPES)(keys=[k], args=["héllo", 21])
    assert mine == theirs == [1, -7, b"text", ["héllo".encode(), [42]], None, b"OK"]
    assert await ref.get(k) == "héllo".encode()


async def test_concurrent_callers_each_get_their_own_reply(pair):
    lean, _ = pair
    echo = lean.register_script(ECHO)
    values = [str(i) for i in range(300)]
    assert await asyncio.gather(*[echo(args=[v]) for v in values]) == [v.encode() for v in values]


async def test_reloads_a_script_the_server_forgot(pair):
    lean, ref = pair
    echo = lean.register_script(ECHO)
    assert await echo(args=["before"]) == b"before"
    await ref.script_flush()
    assert await echo(args=["after"]) == b"after"


async def test_a_script_error_raises_and_the_connection_stays_usable(pair):
    lean, _ = pair
    with pytest.raises(ResponseError, match="deliberate failure"):
        await lean.register_script(FAILS)()
    assert await lean.register_script(ECHO)(args=["still here"]) == b"still here"


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_next(pair):
    lean, _ = pair
    slow = asyncio.create_task(lean.register_script(SPIN)(args=[200_000]))
    await asyncio.sleep(0.05)
    slow.cancel()
    echo = lean.register_script(ECHO)
    assert await asyncio.gather(echo(args=["a"]), echo(args=["b"])) == [b"a", b"b"]


async def test_a_broken_connection_fails_waiting_callers_and_the_next_call_reconnects():
    """The client talks to Redis through a forwarding proxy that drops its connections mid-reply."""
    host, port = "127.0.0.1", int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    db = settings.REDIS_URL.rsplit("/", 1)[1]
    links: list[asyncio.StreamWriter] = []

    async def pipe(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    async def accept(client_reader, client_writer):
        redis_reader, redis_writer = await asyncio.open_connection(host, port)
        links.extend([client_writer, redis_writer])
        await asyncio.gather(pipe(client_reader, redis_writer), pipe(redis_reader, client_writer),
                             return_exceptions=True)

    proxy = await asyncio.start_server(accept, "127.0.0.1", 0)
    lean = ScriptClient(f"redis://127.0.0.1:{proxy.sockets[0].getsockname()[1]}/{db}")
    try:
        assert await lean.register_script(ECHO)(args=["first"]) == b"first"
        waiting = asyncio.create_task(lean.register_script(SPIN)(args=[300_000]))
        await asyncio.sleep(0.05)
        for link in links:
            link.transport.abort()
        with pytest.raises(ConnectionError, match="lost the Redis connection"):
            await waiting
        assert await lean.register_script(ECHO)(args=["again"]) == b"again"
    finally:
        lean.close()
        proxy.close()


async def test_the_database_number_in_the_url_is_selected(pair):
    _, ref = pair
    base = settings.REDIS_URL.rsplit("/", 1)[0]
    other = ScriptClient(f"{base}/13")
    k = key()
    try:
        await other.register_script("return redis.call('SET', KEYS[1], 'x')")(keys=[k])
        assert await ref.get(k) is None  # ref is on the test database, not 13
        other_ref = aioredis.from_url(f"{base}/13")
        assert await other_ref.get(k) == b"x"
        await other_ref.delete(k)
        await other_ref.aclose()
    finally:
        other.close()


async def test_unreachable_redis_raises_connection_error():
    with pytest.raises(ConnectionError, match="could not connect"):
        await ScriptClient("redis://127.0.0.1:1/0").register_script(ECHO)(args=["x"])


def test_other_url_schemes_are_refused():
    with pytest.raises(ValueError, match="rediss"):
        ScriptClient("rediss://example.com:6380/0")


async def test_a_redis_that_stops_answering_fails_its_callers(monkeypatch):
    """A server that accepts the connection and never replies: callers get a TimeoutError, not a hang."""
    from redis.exceptions import TimeoutError as RedisTimeout

    from appliance.gateway import resp

    monkeypatch.setattr(resp, "REPLY_TIMEOUT_S", 0.4)
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    lean = ScriptClient(f"redis://127.0.0.1:{silent.sockets[0].getsockname()[1]}/0")
    try:
        with pytest.raises(RedisTimeout, match="no reply"):
            await asyncio.wait_for(lean.register_script(ECHO)(args=["x"]), 5)
    finally:
        lean.close()
        silent.close()
