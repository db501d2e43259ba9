"""How long a queued request waits after a concurrency slot comes free, with the real Redis script.

    DJANGO_SETTINGS_MODULE=appliance.settings_test python benchmarks/queue_wakeup.py [--rounds 50]

Two cases: the slot is released in the waiter's own gateway process (it is woken at once) and in another process
(the waiter finds it on its next poll: 10 ms doubling to GATEWAY_QUEUE_POLL_S, 50 ms). Also the admission round trip
with and without a queue configured (the script's extra work when nobody waits). Prints p50/p90/max in ms.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import django


def summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (f"{name:<44} p50 {statistics.median(ms):6.2f} ms   p90 {ms[int(len(ms) * 0.9) - 1]:6.2f} ms   "
            f"max {ms[-1]:6.2f} ms")


async def main(rounds: int) -> None:
    import redis.asyncio as aioredis
    from django.conf import settings

    from appliance.gateway import queueing, quota_redis
    from appliance.gateway.quotas import Limits, Queue, Scope
    from appliance.gateway.resp import ScriptClient

    client, lean = aioredis.from_url(settings.REDIS_URL), ScriptClient(settings.REDIS_URL)
    backend = quota_redis.RedisQuotaBackend(client, lean)

    async def handoff(hold_s: float, wake: bool) -> float:
        base = random.randrange(10**9)
        scopes = [Scope("tenant", base, Limits(max_concurrency=1)), Scope("key", base + 1, Limits())]
        queue = Queue(scopes[0], max_wait_s=10)
        held = await backend.admit(scopes, "holder", 1, None, queue)
        assert (await backend.admit(scopes, "waiter", 1, None, queue)).queued
        waiter = asyncio.create_task(queueing.wait(backend, scopes, "waiter", 1, None, queue))
        await asyncio.sleep(hold_s)
        original = quota_redis.released
        if not wake:  # as if another process released it: no local wake-up
            quota_redis.released = lambda *a, **k: None
        try:
            await backend.finish(held.ticket, 1)
        finally:
            quota_redis.released = original
        freed = time.perf_counter()
        decision = await waiter
        assert decision.admitted
        latency = time.perf_counter() - freed
        await backend.finish(decision.ticket, 1)
        return latency

    same = [await handoff(random.uniform(0.02, 0.3), True) for _ in range(rounds)]
    other = [await handoff(random.uniform(0.02, 0.3), False) for _ in range(rounds)]

    async def admission(queued: bool) -> float:
        base = random.randrange(10**9)
        scopes = [Scope("tenant", base, Limits(max_concurrency=4)), Scope("key", base + 1, Limits())]
        queue = Queue(scopes[0], max_wait_s=10) if queued else None
        started = time.perf_counter()
        decision = await backend.admit(scopes, "r", 1, None, queue)
        took = time.perf_counter() - started
        await backend.finish(decision.ticket, 1)
        return took

    plain = [await admission(False) for _ in range(rounds * 4)]
    with_queue = [await admission(True) for _ in range(rounds * 4)]
    print(summary("slot freed -> waiter admitted, same process", same))
    print(summary("slot freed -> waiter admitted, other process", other))
    print(summary("admission round trip, no queue", plain))
    print(summary("admission round trip, queue configured", with_queue))
    lean.close()
    await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    django.setup()
    asyncio.run(main(parser.parse_args().rounds))
