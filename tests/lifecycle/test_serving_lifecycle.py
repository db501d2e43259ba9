"""The whole path with real processes: node agent -> real engine replicas (appliance.runtime.server), gateway under
uvicorn, the official openai client. Scale to zero and back, a shared pool cycling over more models than it holds,
and a replica killed mid-stream.
"""
from __future__ import annotations

import os
import signal
import time

import httpx
import openai
import pytest
from django.conf import settings

from prometheus_client.parser import text_string_to_metric_families

from appliance.catalog.models import Deployment, Pool, Replica
from appliance.lifecycle.services import deploy

from .conftest import wait_until

pytestmark = [pytest.mark.slow]


FULL_LENGTH = {"ignore_eos": True}  # the random-weight model may sample EOS; these checks count tokens


def client_for(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=240)


def test_per_model_deployment_scales_to_zero_and_serves_after_a_cold_start(
        start_agent, start_gateway, register_version, tiny_llama, api_key):
    register_version("coldy", tiny_llama)
    dep = deploy("coldy", mode="per-model", min_replicas=0, max_replicas=1, idle_timeout=3, compile=False).deployment
    assert dep.status == "scaled-to-zero" and not dep.replicas.exists()
    start_agent(cores=2)
    url = start_gateway(GATEWAY_COLD_START_TIMEOUT_S=240)
    client = client_for(url, api_key(["coldy"]))

    started = time.monotonic()
    first = client.completions.create(model="coldy", prompt="Hello", max_tokens=3, extra_body=FULL_LENGTH)
    waited = time.monotonic() - started
    assert first.usage.completion_tokens == 3
    replica = Replica.objects.get(deployment=dep)
    assert replica.cold_start_s and 0 < replica.cold_start_s <= waited + 1
    assert replica.restart_count == 0

    wait_until(lambda: Replica.objects.filter(pk=replica.pk, state="stopped").exists(), 60,
               "the idle deployment to scale to zero")
    dep.refresh_from_db()
    assert dep.desired_replicas == 0 and dep.status == "scaled-to-zero"
    # the start's phases outlive the replica: kept on the deployment, exported on /metrics
    (kept,) = dep.cold_starts
    phases = kept["phases"]
    in_order = ["artifact_fetch", "process_start", "import_runtime", "weight_load", "warm_up"]
    assert set(phases) == {*in_order, "first_ready"}
    assert [p for p, _ in dep.last_cold_start_phases] == in_order
    assert phases["first_ready"] == kept["total_s"] == replica.cold_start_s
    assert sum(v for k, v in phases.items() if k != "first_ready") == pytest.approx(phases["first_ready"], abs=0.01)
    assert phases["weight_load"] > 0 and phases["warm_up"] > 0
    exported = {s.labels["phase"]: s.value for f in text_string_to_metric_families(
        httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {settings.METRICS_TOKEN}"}).text)
                for s in f.samples if s.name == "appliance_cold_start_phase_seconds"
                and s.labels["deployment"] == "coldy"}
    assert exported == pytest.approx(phases)

    second = client.completions.create(model="coldy", prompt="Hello again", max_tokens=2, extra_body=FULL_LENGTH)
    assert second.usage.completion_tokens == 2
    again = Replica.objects.exclude(pk=replica.pk).get(deployment=dep)
    assert again.state == "ready" and again.cold_start_s > 0 and again.pid != replica.pid
    dep.refresh_from_db()
    assert [c["total_s"] for c in dep.cold_starts] == [again.cold_start_s, replica.cold_start_s]  # newest first
    print(f"cold starts (process start -> first token): {replica.cold_start_s:.2f}s, {again.cold_start_s:.2f}s; "
          f"first request waited {waited:.2f}s")


def test_replica_killed_mid_stream_errors_cleanly_and_the_agent_restarts_it(
        start_agent, start_gateway, register_version, tiny_llama, api_key):
    register_version("fragile", tiny_llama)
    dep = deploy("fragile", replicas=1, compile=False).deployment
    agent = start_agent(cores=2)
    client = client_for(start_gateway(GATEWAY_COLD_START_TIMEOUT_S=240), api_key(["fragile"]))
    replica = wait_until(lambda: Replica.objects.filter(deployment=dep, state="ready").first(), 240,
                         "the first replica")
    assert_sealed(replica)

    stream = client.completions.create(model="fragile", prompt="go", max_tokens=400, stream=True,
                                       extra_body=FULL_LENGTH)
    chunks = iter(stream)
    next(chunks)
    os.kill(replica.pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(openai.APIError):
        for _ in chunks:
            pass
    assert time.monotonic() - killed < 15, "the client waited too long for its error"

    restarted = wait_until(lambda: Replica.objects.filter(pk=replica.pk, state="ready", restart_count=1).first(),
                           240, "the agent to restart the replica")
    assert restarted.pid != replica.pid and "code -9" in restarted.last_error
    assert restarted.secret != replica.secret  # a new credential per launch; the gateway follows it
    assert_sealed(restarted)
    for _ in range(3):
        done = client.completions.create(model="fragile", prompt="still there?", max_tokens=2, extra_body=FULL_LENGTH)
        assert done.usage.completion_tokens == 2
    assert Deployment.objects.get(pk=dep.pk).status == "running"

    agent.stop()
    assert not _alive(restarted.pid), "stopping the agent must stop its replicas"


def assert_sealed(replica: Replica) -> None:
    """The agent's replica answers only with its credential, which is in its environment and not its argv."""
    import httpx

    url = f"http://{replica.host}:{replica.port}/health"
    assert replica.secret and httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=replica.auth_headers, timeout=10).json()["status"] == "ok"
    with open(f"/proc/{replica.pid}/cmdline", "rb") as f:
        assert replica.secret.encode() not in f.read()


def test_shared_pool_with_room_for_two_serves_requests_cycling_over_three_models(
        start_agent, start_gateway, register_version, tiny_llama, api_key):
    names = ["pa", "pb", "pc"]
    for name in names:
        register_version(name, tiny_llama)
    for name in names:
        deploy(name, mode="shared", pool="shared-pool", compile=False)
    pool = Pool.objects.get(name="shared-pool")
    assert pool.max_loaded_models == 2
    start_agent(cores=2)
    client = client_for(start_gateway(GATEWAY_COLD_START_TIMEOUT_S=240), api_key(names))

    for name in names + names[:1]:
        done = client.completions.create(model=name, prompt=f"hello {name}", max_tokens=2, extra_body=FULL_LENGTH)
        assert done.usage.completion_tokens == 2, name
        loaded = Replica.objects.filter(deployment__pool=pool, state__in=["pending", "starting", "ready"])
        assert loaded.values("deployment").distinct().count() <= 2
    pool.refresh_from_db()
    assert pool.evictions == 2  # pc evicts pa, then pa evicts pb: the least recently used each time
    evicted = Deployment.objects.get(name="pb")
    assert evicted.desired_replicas == 0 and "evicted from pool shared-pool" in evicted.status_message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"
