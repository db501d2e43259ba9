"""The gateway's session to a replica (engine_session.py against the real replica process's POST /session): many
requests over one connection, each with the tokens its own /generate stream would give; closing one request, or
losing the whole session, aborts exactly what it should on the replica; a replica without sessions is served one
stream per request."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from appliance.gateway.engine_client import EngineClient, EngineRejected
from appliance.gateway.engine_http import ConnectionBroken, Pool
from appliance.gateway.engine_session import Session, SessionStream
from appliance.gateway.routing import Target
from appliance.runtime.protocol import decode_event

from .conftest import Engine, engine_aborts as aborts


def greedy(request_id: str, prompt: str, max_tokens: int) -> dict:
    return {"request_id": request_id, "prompt": prompt,
            "sampling": {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}}


def generate_tokens(engine: Engine, body: dict) -> list[int]:
    with engine.client(timeout=60) as client, client.stream("POST", "/generate", json=body) as r:
        events = [decode_event(line) for line in r.iter_lines() if line]
    return [t for e in events if e.type == "delta" for t in e.token_ids]


async def session_events(stream: SessionStream) -> list[dict]:
    return [event async for events in stream.events() for event in events]


async def wait_idle(engine: Engine, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        health = await asyncio.to_thread(engine.health)
        if health["in_flight"] == 0 and health["kv_blocks_used"] == 0:
            return health
        assert time.monotonic() < deadline, health
        await asyncio.sleep(0.05)


async def connect(engine: Engine) -> Session:
    return await Session.connect(Pool("127.0.0.1", engine.port, secret=engine.secret), 5, 30)


async def test_concurrent_requests_on_one_session_get_their_own_generate_tokens(engine: Engine):
    prompts = [f"request number {i} says" for i in range(6)]
    session = await connect(engine)
    try:
        async def one(i: int) -> list[dict]:
            stream = await session.open(greedy(f"sess-{i}", prompts[i], 10 + i), 30)
            assert stream.started.result() is None
            return await session_events(stream)

        results = await asyncio.gather(*[one(i) for i in range(6)])
    finally:
        session.close()
    for i, events in enumerate(results):
        assert [e["type"] for e in events[:1]] == ["start"] and events[-1]["type"] == "done"
        tokens = [t for e in events if e["type"] == "delta" for t in e["token_ids"]]
        assert len(tokens) == events[-1]["completion_tokens"] == 10 + i
        assert tokens == await asyncio.to_thread(generate_tokens, engine, greedy(f"gen-{i}", prompts[i], 10 + i))
    await wait_idle(engine)


async def test_closing_one_stream_aborts_only_its_request(engine: Engine):
    before = await asyncio.to_thread(aborts, engine)
    session = await connect(engine)
    try:
        doomed = await session.open(greedy("doomed", "a long story", 400), 30)
        kept = await session.open(greedy("kept", "a short story", 40), 30)
        events = doomed.events()
        while not any(e["type"] == "delta" for e in await anext(events)):
            pass
        doomed.close()  # sends the abort on the session
        finished = await session_events(kept)
        assert finished[-1]["type"] == "done" and finished[-1]["completion_tokens"] == 40
        assert [e async for e in events] == []  # nothing more for the closed one
        await wait_idle(engine)
        assert await asyncio.to_thread(aborts, engine) == before + 1
        assert session.usable and session.streams == {}
    finally:
        session.close()


async def test_a_rejected_request_answers_its_error_and_the_session_lives_on(engine: Engine):
    session = await connect(engine)
    try:
        bad = greedy("bad", "x", 5)
        bad["sampling"]["temperature"] = -1
        stream = await session.open(bad, 30)
        status, error = stream.started.result()
        assert status == 400 and error["param"] == "temperature" and "temperature" in error["message"]
        good = await session.open(greedy("good", "x", 5), 30)
        assert (await session_events(good))[-1]["completion_tokens"] == 5
        # the engine client turns a refusal into the same exception as a refused /generate
        target = Target(1, "127.0.0.1", engine.port, secret=engine.secret)
        with pytest.raises(EngineRejected) as exc:
            await EngineClient().open(target, {**bad, "request_id": "bad-2"})
        assert exc.value.status == 400 and exc.value.error["param"] == "temperature"
    finally:
        session.close()


async def test_losing_the_session_aborts_its_requests_on_the_replica(engine: Engine):
    before = await asyncio.to_thread(aborts, engine)
    session = await connect(engine)
    streams = [await session.open(greedy(f"lost-{i}", "a long story", 400), 30) for i in range(3)]
    first = streams[0].events()
    while not any(e["type"] == "delta" for e in await anext(first)):
        pass
    assert (await asyncio.to_thread(engine.health))["in_flight"] == 3
    session.close()
    for stream in streams:
        with pytest.raises(ConnectionBroken):
            await session_events(stream)
    with pytest.raises(ConnectionBroken):
        await session.open(greedy("late", "x", 1), 30)
    await wait_idle(engine)
    assert await asyncio.to_thread(aborts, engine) == before + 3  # aborted, not run to their end


async def test_the_engine_client_keeps_one_session_per_replica_and_replaces_a_broken_one(engine: Engine):
    client = EngineClient()
    target = Target(1, "127.0.0.1", engine.port, secret=engine.secret)
    streams = await asyncio.gather(*[client.open(target, greedy(f"pool-{i}", "hello", 3)) for i in range(4)])
    sessions = {stream.session for stream in streams}
    assert len(sessions) == 1  # concurrent first requests share one connect
    for stream in streams:
        assert sum(len(e["token_ids"]) for batch in [b async for b in client.events(stream)] for e in batch
                   if e["type"] == "delta") == 3
    sessions.pop().close()
    stream = await client.open(target, greedy("after", "hello", 3))
    assert stream.session is not streams[0].session
    assert [b async for b in client.events(stream)][-1][-1]["type"] == "done"
    stream.session.close()
    await wait_idle(engine)


async def test_the_engine_client_without_the_replica_credential_is_refused(engine: Engine):
    """A wrong credential (a replica restarted with a new one behind a stale route) reaches nothing: the session
    and the per-request paths both answer 401, which the gateway treats as an unavailable replica."""
    from appliance.gateway.engine_client import EngineUnavailable
    from appliance.gateway.engine_session import SessionRefused

    with pytest.raises(SessionRefused) as refused:
        await Session.connect(Pool("127.0.0.1", engine.port, secret="stale-credential"), 5, 30)
    assert refused.value.status == 401
    with pytest.raises(EngineUnavailable):
        await EngineClient().open(Target(1, "127.0.0.1", engine.port, secret="stale-credential"), greedy("s", "x", 1))
    status, body = await EngineClient().call_raw(Target(1, "127.0.0.1", engine.port), "GET", "/tokenizer_info", None)
    assert status == 401 and b"invalid_replica_credential" in body


class _WithoutSessions:
    """A replica as it was before sessions: the real app, but POST /session is not a route."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/session":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b'{"error": {"message": "no route /session"}}'})
            return
        await self.app(scope, receive, send)


@pytest.fixture
def replica_without_sessions(tiny_llama):
    import uvicorn

    from appliance.runtime.server import bind, build_engine
    from appliance.runtime.server_app import ReplicaApp

    app = ReplicaApp("tiny")
    app.engine, facts = build_engine(str(tiny_llama), "cpu", "tiny")
    app.max_model_len = facts["max_model_len"]
    sock, url = bind("127.0.0.1", 0, None)
    server = uvicorn.Server(uvicorn.Config(_WithoutSessions(app), lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield int(url.rsplit(":", 1)[1])
    server.should_exit = True
    thread.join(10)
    app.engine.shutdown()


async def test_a_replica_without_sessions_is_served_one_stream_per_request(replica_without_sessions):
    client = EngineClient()
    target = Target(1, "127.0.0.1", replica_without_sessions)
    response = await client.open(target, greedy("old-1", "hello", 4))
    assert not isinstance(response, SessionStream)
    batches = [batch async for batch in client.events(response)]
    assert [e["type"] for b in batches for e in b][0] == "start" and batches[-1][-1]["completion_tokens"] == 4
    again = await client.open(target, greedy("old-2", "hello", 2))  # remembered: no second session attempt
    assert not isinstance(again, SessionStream) and len(client._no_session) == 1
    again.close()
