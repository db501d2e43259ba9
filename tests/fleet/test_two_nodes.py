"""Two nodes as one appliance: a deployment of 2 replicas lands one on each node, requests stream through the gateway
of either node to the replicas of both, and when one node's agent and replicas are SIGKILLed the node is marked lost,
its replica is placed again on the other node, and traffic goes on: no request is lost except those in flight on
the dead node, which end with a clean OpenAI error (an SSE error event, then [DONE]). The lost node comes back
ready, and draining the other node moves its replicas there without failing a request.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import httpx
import openai
import pytest
from django.core.management import call_command

from appliance.catalog.models import Node, Replica
from appliance.lifecycle.services import deploy

from .conftest import NODE_LOST_AFTER_S, Fleet, kill, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
for _noisy in ("httpx", "httpx2"):  # a line per request under load would bury the test's own output
    logging.getLogger(_noisy).setLevel(logging.WARNING)
MODEL = "tiny-fleet"
FULL_LENGTH = {"ignore_eos": True}  # the random-weight model may sample EOS; these checks count tokens


@dataclass
class Outcome:
    gateway: str
    started: float
    ended: float
    stream: bool
    tokens: int = 0
    error: str = ""  # "" when the answer came whole; else the exception's class and message


def in_flight(replica: Replica) -> int:
    """Requests the replica is generating now (its /health, behind its credential)."""
    health = httpx.get(f"{replica.base_url}/health", headers=replica.auth_headers, timeout=10).json()
    return int(health["in_flight"])


def ready_replicas() -> list[Replica]:
    return list(Replica.objects.filter(deployment__name=MODEL, state="ready").select_related("node"))


def one_request(client: openai.OpenAI, gateway: str, stream: bool, max_tokens: int) -> Outcome:
    outcome = Outcome(gateway, time.monotonic(), 0.0, stream)
    try:
        if stream:
            for chunk in client.completions.create(model=MODEL, prompt="Once upon", max_tokens=max_tokens,
                                                   stream=True, stream_options={"include_usage": True},
                                                   extra_body=FULL_LENGTH):
                if chunk.usage is not None:
                    outcome.tokens = chunk.usage.completion_tokens
        else:
            answer = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=max_tokens,
                                               extra_body=FULL_LENGTH)
            outcome.tokens = answer.usage.completion_tokens
    except Exception as exc:  # noqa: BLE001 - recorded and judged below
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.ended = time.monotonic()
    return outcome


class Load:
    """Threads sending requests through both gateways in turn (streamed and whole) until stopped."""

    def __init__(self, clients: dict[str, openai.OpenAI], threads: int = 4, max_tokens: int = 24) -> None:
        self.clients, self.max_tokens = clients, max_tokens
        self.outcomes: list[Outcome] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        names = sorted(self.clients)
        n = i
        while not self.stopping.is_set():
            gateway = names[n % len(names)]
            self.outcomes.append(one_request(self.clients[gateway], gateway, stream=n % 3 != 2,
                                             max_tokens=self.max_tokens))
            n += 1

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)


def open_long_stream(url: str, key: str) -> tuple[httpx.Client, httpx.Response, Iterator[str], list[str]]:
    """A streamed completion left open after its first chunk (so that it is in flight on some replica)."""
    http = httpx.Client(timeout=60)
    response = http.send(http.build_request(
        "POST", f"{url}/v1/completions", headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "prompt": "A long tale", "max_tokens": 400, "stream": True, **FULL_LENGTH}), stream=True)
    assert response.status_code == 200, response.read()
    lines = response.iter_lines()
    events = [next(line for line in lines if line.startswith("data: "))]
    return http, response, lines, events


def finish_stream(http: httpx.Client, response: httpx.Response, lines: Iterator[str], events: list[str]) -> list[str]:
    try:
        events += [line for line in lines if line.startswith("data: ")]
    finally:
        response.close()
        http.close()
    return events


def test_two_nodes_serve_one_deployment_and_survive_losing_a_node(fleet: Fleet, register_version, tiny_llama,
                                                                   api_key):
    began = time.monotonic()
    for name in ("fleet-a", "fleet-b"):
        fleet.start_agent(name, cores=2)  # fleet-b has room for both replicas once fleet-a is gone
        fleet.start_gateway(name)
    wait_until(lambda: Node.objects.filter(name__in=["fleet-a", "fleet-b"], last_heartbeat__isnull=False).count() == 2,
               90, "both node agents to heartbeat")
    addresses = dict(Node.objects.values_list("name", "address"))
    assert addresses == {h.name: h.address for h in fleet.network.hosts}

    register_version(MODEL, tiny_llama)
    deploy(MODEL, replicas=2, min_replicas=2, max_replicas=2, compile=False)
    fleet.wait_gateways()
    wait_until(lambda: len(ready_replicas()) == 2, 150, "two ready replicas")
    replicas = ready_replicas()
    # one on each node, listening on its node's address (not loopback), behind its own credential
    assert sorted(r.node.name for r in replicas) == ["fleet-a", "fleet-b"]
    assert all(r.host == r.node.address and r.secret for r in replicas)
    refused = httpx.post(f"{replicas[0].base_url}/generate", json={"request_id": "x", "prompt": "hi"}, timeout=10)
    assert refused.status_code == 401  # reachable from another host, but not without the replica credential
    started_up = time.monotonic() - began

    key = api_key([MODEL])
    clients = {name: openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
               for name, url in fleet.gateways.items()}
    for name, client in clients.items():  # each gateway reaches both nodes' replicas
        for _ in range(4):
            outcome = one_request(client, name, stream=True, max_tokens=8)
            assert not outcome.error and outcome.tokens == 8, outcome

    node_a = Node.objects.get(name="fleet-a")
    (replica_a,) = Replica.objects.filter(node=node_a, state="ready")
    with Load(clients) as load:
        time.sleep(1.5)
        # in flight when node A dies: the load's requests, and long streams through both gateways opened just now
        longs = [(name, *open_long_stream(url, key)) for name, url in sorted(fleet.gateways.items()) for _ in range(2)]
        while (busy_on_a := in_flight(replica_a)) < 1 and len(longs) < 10:
            name = sorted(fleet.gateways)[len(longs) % 2]
            longs.append((name, *open_long_stream(fleet.gateways[name], key)))
        killed_at = time.monotonic()
        os.killpg(fleet.agents["fleet-a"].popen.pid, signal.SIGKILL)
        kill(replica_a.pid)
        done_killing = time.monotonic()
        endings = [(name, finish_stream(*opened)) for name, *opened in longs]

        wait_until(lambda: Node.objects.get(name="fleet-a").state == "lost", NODE_LOST_AFTER_S + 20,
                   "node fleet-a to be marked lost")
        lost_after = time.monotonic() - killed_at
        wait_until(lambda: Replica.objects.filter(deployment__name=MODEL, node__name="fleet-b").exclude(
            state="stopped").count() == 2, 30, "the lost node's replica to be placed again on fleet-b")
        fleet.start_agent("fleet-a", cores=2)  # node A comes back while the replacement starts (used below)
        wait_until(lambda: [r.node.name for r in ready_replicas()] == ["fleet-b", "fleet-b"], 120,
                   "the lost node's replica to be ready again on fleet-b")
        replaced_after = time.monotonic() - killed_at
        time.sleep(1)  # traffic on the two fleet-b replicas
    old = Replica.objects.get(pk=replica_a.pk)
    assert old.state == "stopped" and "fleet-a stopped heartbeating" in old.last_error

    # the long streams end with [DONE]: whole (to their max_tokens), or, on the dead node, after an error event
    cut = []
    for name, events in endings:
        assert events[-1] == "data: [DONE]", (name, events[-3:])
        last = json.loads(events[-2][6:])
        if "error" in last:
            assert "replica" in last["error"]["message"] and last["error"]["type"] == "server_error", last
            cut.append(name)
        else:
            assert last["choices"][0]["finish_reason"] == "length", last

    # the load: everything sent after the kill was answered whole (retried on the live replica before any byte went
    # out); the only failures were in flight at the kill, and ended as clean OpenAI errors, not timeouts or hangs
    after = [o for o in load.outcomes if o.started > done_killing]
    failed = [o for o in load.outcomes if o.error]
    assert busy_on_a >= 1 and len(failed) + len(cut) >= 1  # something was in flight there, and was cut
    assert after and all(not o.error and o.tokens == load.max_tokens for o in after), [o for o in after if o.error]
    assert {o.gateway for o in after} == {"fleet-a", "fleet-b"}
    for o in failed:
        assert o.started < done_killing and o.ended > killed_at, o
        assert o.error.startswith(("APIError", "InternalServerError")) and "replica" in o.error, o
        assert o.ended - killed_at < 10, o
    failover = f"{len(load.outcomes)} requests under load, {len(after)} sent after the kill all answered; cut on " \
        f"the dead node with a clean error: {len(failed)} of the load's, {len(cut)} of {len(longs)} long streams; " \
        f"node lost {lost_after:.1f}s after the kill (NODE_LOST_AFTER_S={NODE_LOST_AFTER_S}), its replica ready " \
        f"again on fleet-b {replaced_after:.1f}s after it"

    # node A is back (ready; its old replica counts for nothing), then node B is drained under traffic: its
    # replicas start on A first and stop on B after, and no request fails
    wait_until(lambda: Node.objects.get(name="fleet-a").state == "ready", 60, "node fleet-a to be ready again")
    assert [r.node.name for r in ready_replicas()] == ["fleet-b", "fleet-b"]
    with Load(clients, threads=1) as drain_load:
        drained_at = time.monotonic()
        call_command("drain_node", "fleet-b", "--wait", "120", stdout=io.StringIO())
        drained_after = time.monotonic() - drained_at
        time.sleep(1)
    assert [r.node.name for r in ready_replicas()] == ["fleet-a", "fleet-a"]
    assert not Replica.objects.filter(node__name="fleet-b").exclude(state="stopped").exists()
    assert drain_load.outcomes and all(not o.error and o.tokens == drain_load.max_tokens for o in drain_load.outcomes), \
        [o for o in drain_load.outcomes if o.error]

    print(f"two-node test ({fleet.network.mode}): up in {started_up:.1f}s; {failover}; node B drained in "
          f"{drained_after:.1f}s with {len(drain_load.outcomes)} requests all answered; "
          f"{time.monotonic() - began:.1f}s in all")
