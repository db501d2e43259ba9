"""Redis and PostgreSQL stopped (killed) and started again under load: while one is down the gateway answers each
request (a 503 with Retry-After, or the answer itself where its caches make that safe), never a 500 or a hang; it
recovers by itself when the server is back; no usage row is lost or doubled."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from .conftest import MODEL, Stack

pytestmark = [pytest.mark.faults, pytest.mark.slow]

WORKERS = 4
DOWN_S = 3.0
RECOVERED_AFTER = 8  # consecutive successes after the restart


async def load(stack: Stack, key: str, fault) -> dict:
    """Requests from WORKERS clients before, during and after `fault` (an async callable that stops the server and
    starts it again), until RECOVERED_AFTER successes in a row follow the restart (60 s at most)."""
    seen = {"ok": [], "refused": [], "lost": [], "restarted_at": None, "streak": 0}
    stop = asyncio.Event()

    async def worker(client: httpx.AsyncClient, w: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            body = {"model": MODEL, "prompt": f"load {w}.{n}", "max_tokens": 4, "ignore_eos": True}
            try:
                resp = await client.post("/v1/completions", json=body)
            except httpx.HTTPError as exc:
                seen["lost"].append(f"{type(exc).__name__}: {exc}")
                continue
            if resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] == 4:
                seen["ok"].append(resp.headers["x-request-id"])
                if seen["restarted_at"] is not None:
                    seen["streak"] += 1
                    if seen["streak"] >= RECOVERED_AFTER:
                        stop.set()
            elif (resp.status_code == 503 and resp.headers.get("retry-after", "").isdigit()
                  and resp.json()["error"]["type"] == "server_error"):
                seen["refused"].append(resp.headers.get("x-request-id"))
                seen["streak"] = 0
                await asyncio.sleep(0.2)  # a client backing off (shorter than Retry-After, to keep probing)
            else:
                seen["lost"].append(f"{resp.status_code}: {resp.text[:300]}")

    async def inject() -> None:
        await asyncio.sleep(1.5)
        await fault()
        seen["restarted_at"] = time.monotonic()
        seen["streak"] = 0

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=30) as client:
        workers = [asyncio.create_task(worker(client, w)) for w in range(WORKERS)]
        await inject()
        try:
            await asyncio.wait_for(stop.wait(), 60)
        except TimeoutError:
            stop.set()
        await asyncio.gather(*workers)
    seen["recovered_s"] = time.monotonic() - seen["restarted_at"]
    return seen


def check_and_report(stack: Stack, caller: dict, seen: dict, name: str, fault_report, t0: float) -> None:
    sent = len(seen["ok"]) + len(seen["refused"]) + len(seen["lost"])
    fault_report.add(name, 1, sent, len(seen["ok"]) + len(seen["refused"]),
                     f"{len(seen['ok'])} answers, {len(seen['refused'])} 503 + Retry-After while down; "
                     f"{RECOVERED_AFTER} successes in a row {seen['recovered_s']:.1f} s after the restart; "
                     "one usage row per answer", time.monotonic() - t0)
    assert not seen["lost"], seen["lost"][:5]
    assert seen["streak"] >= RECOVERED_AFTER, "the gateway did not recover by itself"
    deadline = time.monotonic() + 15  # rows queued while the database was down are written when it is back
    while True:
        usage = stack.usage(caller["tenant_id"])
        missing = [i for i in seen["ok"] if i not in usage]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"{len(missing)} of {len(seen['ok'])} answered requests have no usage row"
    assert all(usage[i] == (200, 4) for i in seen["ok"])


def test_redis_restart_under_load_is_answered_and_recovered(stack: Stack, fault_report):
    caller = stack.key()
    t0 = time.monotonic()

    async def restart_redis() -> None:
        stack.redis.stop()
        await asyncio.sleep(DOWN_S)
        stack.redis.start()

    seen = asyncio.run(load(stack, caller["key"], restart_redis))
    check_and_report(stack, caller, seen, "Redis killed and restarted under load", fault_report, t0)


def test_postgres_restart_under_load_is_answered_and_loses_no_usage_row(stack: Stack, fault_report):
    caller = stack.key()
    t0 = time.monotonic()

    async def restart_postgres() -> None:
        await asyncio.to_thread(stack.pg.stop)
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(stack.pg.start)

    seen = asyncio.run(load(stack, caller["key"], restart_postgres))
    check_and_report(stack, caller, seen, "PostgreSQL killed (immediate stop) and restarted under load",
                     fault_report, t0)
