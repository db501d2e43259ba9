"""The gateway reaches replicas over one session each by default; with GATEWAY_ENGINE_SESSIONS=0 it opens one
/generate stream per request. Both give clients the same answers and abort what a departed client started."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from .conftest import Appliance, World, engine_aborts as aborts, start_gateway, stop_gateway

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def per_request_gateway(world, tmp_path_factory) -> Appliance:
    gateway = start_gateway(tmp_path_factory.mktemp("gateway-per-request"), GATEWAY_ENGINE_SESSIONS="0")
    yield gateway
    stop_gateway(gateway)


def stream_completion(url: str, key: str, body: dict) -> tuple[list[str], dict]:
    """The text pieces and the usage of a streamed completion."""
    pieces, usage = [], None
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True,
                                                              "stream_options": {"include_usage": True}},
                      headers={"Authorization": f"Bearer {key}"}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                pieces += [c["text"] for c in chunk["choices"]]
                usage = chunk.get("usage") or usage
    return pieces, usage


def test_both_paths_give_the_same_greedy_stream(world: World, per_request_gateway: Appliance):
    body = {"model": world.model, "prompt": "Paths that meet", "max_tokens": 12, "temperature": 0,
            "ignore_eos": True}
    session_pieces, session_usage = stream_completion(world.appliance.url, world.acme_key, body)
    per_request_pieces, per_request_usage = stream_completion(per_request_gateway.url, world.acme_key, body)
    assert "".join(session_pieces) == "".join(per_request_pieces) != ""
    assert session_usage == per_request_usage and session_usage["completion_tokens"] == 12


@pytest.mark.parametrize("path", ["session", "per-request"])
def test_a_departed_client_s_request_is_aborted_on_the_replica(world: World, per_request_gateway: Appliance, path):
    url = world.appliance.url if path == "session" else per_request_gateway.url
    before = aborts(world.engine)
    body = {"model": world.model, "prompt": "a long story", "max_tokens": 400, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body,
                      headers={"Authorization": f"Bearer {world.acme_key}"}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        lines = r.iter_lines()  # kept: dropping the iterator would close the response here
        first = next(line for line in lines if line.startswith("data: "))
        assert world.engine.health()["in_flight"] == 1, first
    deadline = time.monotonic() + 10
    while (health := world.engine.health())["in_flight"] or health["kv_blocks_used"]:
        assert time.monotonic() < deadline, health
        time.sleep(0.02)
    assert aborts(world.engine) == before + 1  # aborted, not run to its end
