"""kill -9 of an engine replica while 16 streams run, with the node agent, the gateway under uvicorn and private
PostgreSQL and Redis: every client gets its whole answer or an OpenAI-shaped error event and a closed stream, in
bounded time; the agent restarts the replica; the next requests succeed; the dead requests' quota reservations are
released; each request has one usage row with the tokens its client received."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import openai
import pytest

from appliance.gateway import keys

from .conftest import MODEL, Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow]

STREAMS = 16
MAX_TOKENS = 64
ERROR_BOUND_S = 15  # from the kill to the last client's error


async def one_stream(client: openai.AsyncOpenAI, i: int, started: asyncio.Event, counts: list[int]) -> dict:
    """Stream a completion; the outcome: whole (finish_reason and every token) or error (an APIError raised by the
    client from the gateway's error event), the request id and the tokens received (one logprob each)."""
    out = {"id": None, "tokens": 0, "finish": None, "error": None}
    try:
        stream = await client.completions.create(model=MODEL, prompt=f"stream {i}", max_tokens=MAX_TOKENS,
                                                 stream=True, logprobs=0, extra_body={"ignore_eos": True})
        async for chunk in stream:
            out["id"] = chunk.id
            choice = chunk.choices[0] if chunk.choices else None
            if choice is not None and choice.logprobs is not None:
                out["tokens"] += len(choice.logprobs.tokens or [])
                counts[i] = out["tokens"]
                started.set()
            if choice is not None and choice.finish_reason:
                out["finish"] = choice.finish_reason
    except openai.APIError as exc:
        out["error"] = exc
    out["ended_at"] = time.monotonic()
    return out


async def storm(stack: Stack, key: str) -> tuple[list[dict], float]:
    async with openai.AsyncOpenAI(base_url=stack.v1, api_key=key, max_retries=0, timeout=60) as client:
        started, counts = asyncio.Event(), [0] * STREAMS
        tasks = [asyncio.create_task(one_stream(client, i, started, counts)) for i in range(STREAMS)]
        await asyncio.wait_for(started.wait(), 60)
        while sum(1 for c in counts if c) < STREAMS // 2 and max(counts) < MAX_TOKENS // 2:
            await asyncio.sleep(0.01)  # most streams under way, none near its end
        _, pid, _ = stack.ready_replica()
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        return await asyncio.wait_for(asyncio.gather(*tasks), ERROR_BOUND_S + 30), killed


def test_replica_killed_under_16_streams_loses_no_request_and_no_quota(stack: Stack, fault_report):
    caller = stack.key(max_concurrency=STREAMS)
    replica_id, pid, restarts = stack.ready_replica()
    t0 = time.monotonic()
    outcomes, killed = asyncio.run(storm(stack, caller["key"]))

    whole = [o for o in outcomes if o["error"] is None and o["finish"] == "length" and o["tokens"] == MAX_TOKENS]
    failed = [o for o in outcomes if isinstance(o["error"], openai.APIError) and "replica" in str(o["error"]).lower()
              and o["ended_at"] - killed < ERROR_BOUND_S]  # the gateway's error event, as the client raises it
    row = fault_report.add("kill -9 an engine replica under 16 streams", 1, STREAMS, len(whole) + len(failed),
                           f"{len(whole)} whole answers, {len(failed)} OpenAI error events within "
                           f"{max((o['ended_at'] for o in failed), default=killed) - killed:.1f} s of the kill",
                           time.monotonic() - t0)
    assert row.lost == 0, [o for o in outcomes if o not in whole and o not in failed]
    assert failed, "the kill came after every stream had finished: it tested nothing"

    restarted = wait_until(lambda: (r := stack.ready_replica()) and r[1] != pid and r, 120,
                           "the agent to restart the replica")
    back = time.monotonic()
    assert restarted[0] == replica_id and restarted[2] == restarts + 1
    r = stack.redis.client()
    for scope, sid in (("tenant", caller["tenant_id"]), ("key", caller["key_id"])):
        assert r.zcard(keys.quota_inflight(scope, sid)) == 0, f"a dead request still holds a {scope} slot"
    assert int(r.get(keys.replica_outstanding(replica_id)) or 0) == 0

    with openai.OpenAI(base_url=stack.v1, api_key=caller["key"], max_retries=0, timeout=60) as client:
        after = [client.completions.create(model=MODEL, prompt=f"after {i}", max_tokens=4,
                                           extra_body={"ignore_eos": True}) for i in range(4)]
    assert all(a.usage.completion_tokens == 4 for a in after)

    ids = {o["id"] for o in outcomes if o["id"]}
    assert len(ids) == STREAMS
    usage = wait_until(lambda: (u := stack.usage(caller["tenant_id"])) and len(u) == STREAMS + 4 and u, 10,
                       "a usage row for every request")
    for o in outcomes:  # one row per request, billed for the tokens its client received
        status, tokens = usage[o["id"]]
        assert (status == 200) == (o["error"] is None) and tokens == o["tokens"], (o, usage[o["id"]])

    row.sent += len(after)
    row.answered += len(after)
    row.notes += (f"; the agent restarted the replica in {back - killed:.0f} s and the next {len(after)} requests "
                  "succeeded; no quota slot held; one usage row each, for the tokens received")
    row.seconds = round(time.monotonic() - t0, 1)
