"""A client that goes away mid-stream cancels its engine request (KV blocks freed); a replica that dies
mid-stream gives its client a clean error, not a hang."""
from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .conftest import World, committed, make_deployment

pytestmark = pytest.mark.django_db


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def outstanding(deployment: str) -> int:
    import redis
    from django.conf import settings

    from appliance.catalog.models import Replica
    from appliance.gateway import keys

    replica = Replica.objects.get(deployment__name=deployment)
    return int(redis.Redis.from_url(settings.REDIS_URL).get(keys.replica_outstanding(replica.id)) or 0)


def test_client_disconnect_aborts_the_engine_request_and_frees_its_blocks(world: World):
    from appliance.tenancy.models import UsageRecord

    body = {"model": world.model, "prompt": "a long story", "max_tokens": 300, "ignore_eos": True,
            "stream": True}
    headers = {"Authorization": f"Bearer {world.acme_key}"}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{world.appliance.v1}/completions", json=body, headers=headers) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
            health = world.engine.health()
            assert health["in_flight"] >= 1 and health["kv_blocks_used"] > 0
            assert outstanding(world.model) == 1  # what the autoscaler reads
    # the connection is closed: the gateway must abort the engine request
    assert wait_for(lambda: (lambda h: h["in_flight"] == 0 and h["kv_blocks_used"] == 0)(world.engine.health())), \
        world.engine.health()
    assert wait_for(lambda: UsageRecord.objects.filter(request_id=first["id"]).exists())
    row = UsageRecord.objects.get(request_id=first["id"])
    assert row.status_code == 499 and 1 <= row.completion_tokens < 300
    assert outstanding(world.model) == 0


@pytest.mark.slow
def test_replica_on_a_unix_socket_dying_mid_stream_gives_a_clean_error(world: World, engines):
    from appliance.tenancy.models import UsageRecord

    engine = engines["fragile"].wait()
    try:
        committed(make_deployment, "tiny-fragile", "tiny", engine.model_dir, engine)
        client = openai.OpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0, timeout=30)
        stream = client.completions.create(model="tiny-fragile", prompt="go", max_tokens=400, stream=True,
                                           extra_body={"ignore_eos": True})
        it = iter(stream)
        first = next(it)
        assert engine.health()["in_flight"] == 1  # served through the Unix socket
        engine.process.kill()
        started = time.monotonic()
        with pytest.raises(openai.APIError) as exc:
            for _ in it:
                pass
        assert time.monotonic() - started < 10
        assert "replica" in str(exc.value.message)
        assert wait_for(lambda: UsageRecord.objects.filter(request_id=first.id).exists())
        assert UsageRecord.objects.get(request_id=first.id).status_code == 503
        with pytest.raises(openai.InternalServerError) as exc:  # nothing serves it now: 503, not a hang
            client.completions.create(model="tiny-fragile", prompt="go", max_tokens=1)
        assert exc.value.status_code == 503 and "retry-after" in exc.value.response.headers
    finally:
        engine.stop()
