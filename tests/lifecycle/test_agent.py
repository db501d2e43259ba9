"""The node agent as a real process (`manage.py run_agent`) reconciling real replica processes.

Until the engine's internal server lands in this branch, replicas run the labelled STAND-IN server
(tests/lifecycle/standin_server.py), which speaks the same replica contract.
"""
from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from appliance.catalog.models import Deployment, Pool, Replica
from appliance.lifecycle.routing_state import OUTSTANDING_KEY, redis_client
from appliance.lifecycle.services import deploy, wake

from .conftest import wait_until
from .engine_client import generate

pytestmark = [pytest.mark.slow]


def ready_replica(dep: Deployment, timeout: float = 60) -> Replica:
    def find():
        return Replica.objects.filter(deployment=dep, state="ready").first()

    return wait_until(find, timeout, f"a ready replica of {dep.name}")


def request(dep: Deployment, **kwargs) -> str:
    """What the gateway does: wake the deployment, wait for a ready replica, count the request outstanding."""
    wake(dep)
    replica = ready_replica(dep)
    key = OUTSTANDING_KEY.format(id=replica.pk)
    redis_client().incr(key)
    try:
        text, _ = generate(replica.base_url, **kwargs)
    finally:
        redis_client().decr(key)
    return text


def test_per_model_deployment_scales_to_zero_and_cold_starts_standin(start_agent, register_version, tiny_llama):
    register_version("pm", tiny_llama)
    dep = deploy("pm", mode="per-model", min_replicas=0, max_replicas=1, idle_timeout=2, compile=False).deployment
    assert dep.desired_replicas == 0 and dep.status == "scaled-to-zero"
    agent = start_agent(cores=2)

    assert request(dep, max_tokens=3).strip() == "tok0 tok1 tok2"
    first = Replica.objects.get(deployment=dep, state__in=["ready", "draining", "stopped"])
    assert first.cold_start_s and first.cold_start_s > 0.3  # includes the stand-in's 0.3 s load
    assert first.pid and first.started_at and first.ready_at

    wait_until(lambda: Replica.objects.filter(pk=first.pk, state="stopped").exists(), 20, "scale to zero")
    dep.refresh_from_db()
    assert dep.desired_replicas == 0 and dep.status == "scaled-to-zero"
    assert not _alive(first.pid)

    assert request(dep, max_tokens=2).strip() == "tok0 tok1"
    second = Replica.objects.filter(deployment=dep).exclude(pk=first.pk).get()
    assert second.cold_start_s and second.cold_start_s > 0.3 and second.pid != first.pid
    agent.stop()
    assert not _alive(second.pid)


def test_shared_pool_with_room_for_two_serves_three_models_and_counts_evictions_standin(
        start_agent, register_version, tiny_llama):
    names = ["m1", "m2", "m3"]
    for name in names:
        register_version(name, tiny_llama)
    deps = [deploy(n, mode="shared", pool="pool", compile=False).deployment for n in names]
    pool = Pool.objects.get(name="pool")
    assert pool.max_loaded_models == 2
    start_agent(cores=2)
    for round_ in range(2):
        for dep in deps:
            assert request(dep, max_tokens=2).strip() == "tok0 tok1", (round_, dep.name)
            loaded = Replica.objects.filter(deployment__pool=pool, state__in=["pending", "starting", "ready"])
            assert loaded.values("deployment").distinct().count() <= 2
    pool.refresh_from_db()
    assert pool.evictions >= 4  # every request after the first two loads evicts the least recently used model


def test_killed_replica_mid_stream_errors_cleanly_and_is_restarted_standin(start_agent, register_version, tiny_llama):
    register_version("ded", tiny_llama)
    dep = deploy("ded", replicas=1, compile=False).deployment
    start_agent(cores=2, STANDIN_TOKEN_INTERVAL_S="0.05")
    replica = ready_replica(dep)
    got_tokens = threading.Event()
    outcome: dict = {}

    def stream():
        try:
            outcome["text"] = generate(replica.base_url, max_tokens=400, timeout=10,
                                       on_delta=lambda e: got_tokens.set())
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    client = threading.Thread(target=stream)
    client.start()
    assert got_tokens.wait(10)
    os.kill(replica.pid, signal.SIGKILL)
    client.join(15)
    assert not client.is_alive(), "the client hung after its replica died"
    assert "error" in outcome and "text" not in outcome

    restarted = wait_until(lambda: Replica.objects.filter(pk=replica.pk, state="ready", restart_count=1).first(), 30,
                           "the agent to restart the replica")
    assert restarted.pid != replica.pid and "exited with code -9" in restarted.last_error
    text, _ = generate(restarted.base_url, max_tokens=3)
    assert text.strip() == "tok0 tok1 tok2"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"
