"""A fleet of two nodes on one machine: for each "host" (hosts.py) a real node agent (`manage.py run_agent`) and a
real gateway (uvicorn), started inside its network namespace with its own NODE_NAME and NODE_ADDRESS, all sharing
the test's PostgreSQL database and Redis (through the forwarder) and one artifact store directory.
"""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.lifecycle.conftest import (  # noqa: F401 - fixtures reused from the lifecycle tests
    ROOT, Proc, api_key, lc_home, process_env, register_version, wait_until,
)

from .hosts import Host, Network, make_network

NODE_LOST_AFTER_S = 6  # short, so the test sees a node lost; long enough that a busy agent's tick never trips it
DB_PORT, REDIS_PORT = 25432, 26379  # the forwarder's ports on the bridge address (netns mode)


@dataclass
class Fleet:
    network: Network
    env: dict
    logs: Path
    procs: list[Proc] = field(default_factory=list)
    agents: dict[str, Proc] = field(default_factory=dict)
    gateways: dict[str, str] = field(default_factory=dict)  # node name -> base URL

    def host(self, name: str) -> Host:
        return next(h for h in self.network.hosts if h.name == name)

    def host_env(self, host: Host) -> dict:
        return {**self.env, "NODE_NAME": host.name, "NODE_ADDRESS": host.address,
                "APPLIANCE_RUN_DIR": str(self.logs / f"run-{host.name}")}

    def start_agent(self, name: str, cores: int = 2) -> Proc:
        host = self.host(name)
        proc = Proc(host.argv([sys.executable, "manage.py", "run_agent", "--device", "cpu", "--cores", str(cores),
                               "--tick", "0.3"]), self.host_env(host), self.logs / f"agent-{name}.log")
        self.procs.append(proc)
        self.agents[name] = proc
        return proc

    def start_gateway(self, name: str) -> str:
        host = self.host(name)
        port = 8000 if host.netns else free_port(host.address)
        proc = Proc(host.argv([sys.executable, "-m", "uvicorn", "appliance.asgi:application", "--host", host.address,
                               "--port", str(port), "--no-access-log"]),
                    {**self.host_env(host), "GATEWAY_ROUTE_CACHE_S": "0.3", "GATEWAY_AUTH_CACHE_S": "1",
                     "GATEWAY_LAST_REQUEST_WRITE_S": "1", "GATEWAY_COLD_START_TIMEOUT_S": "60"},
                    self.logs / f"gateway-{name}.log")
        self.procs.append(proc)
        url = self.gateways[name] = f"http://{host.address}:{port}"
        return url

    def wait_gateways(self, timeout: float = 90) -> None:
        for name, url in self.gateways.items():
            def up(url=url, name=name):
                try:
                    return httpx.get(f"{url}/v1/models", timeout=2).status_code == 401
                except httpx.TransportError:
                    assert self.procs and all(p.popen.poll() is None for p in self.procs), self.outputs()
                    return False

            wait_until(up, timeout, f"the gateway on {name}")

    def outputs(self) -> str:
        return "\n".join(f"--- {p.log.name} ---\n{p.output()[-3000:]}" for p in self.procs)


def free_port(address: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def via(url: str, address: str, port: int) -> str:
    """`url` with its host and port replaced (a service URL as the namespaced hosts reach it)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{netloc}{address}:{port}").geturl()


@pytest.fixture
def fleet(process_env, lc_home, tmp_path):
    """Two hosts, fleet-a and fleet-b, with nothing started yet; everything is torn down even when the test fails
    (processes by their ids, then the namespaces and the bridge)."""
    network = make_network(["fleet-a", "fleet-b"])
    print(f"fleet network: {network.mode}" + (f" ({network.note})" if network.note else
                                               f", hosts {[h.address for h in network.hosts]}"))
    env = {**process_env, "APPLIANCE_NODE_LOST_AFTER_S": str(NODE_LOST_AFTER_S), "APPLIANCE_NUM_THREADS": "1",
           "APPLIANCE_RESTART_BACKOFF_BASE_S": "0.5", "LOG_LEVEL": "INFO"}
    fleet = Fleet(network, env, tmp_path)
    try:
        if network.mode == "netns":
            db, redis_url = urlsplit(env["DATABASE_URL"]), urlsplit(env["REDIS_URL"])
            forwarder = Proc([sys.executable, "-m", "tests.fleet.forwarder", network.services_address,
                              f"{DB_PORT}={db.hostname}:{db.port or 5432}",
                              f"{REDIS_PORT}={redis_url.hostname}:{redis_url.port or 6379}"],
                             process_env, tmp_path / "forwarder.log")
            fleet.procs.append(forwarder)
            forwarder.wait_for("FORWARDING", 30)
            env["DATABASE_URL"] = via(env["DATABASE_URL"], network.services_address, DB_PORT)
            env["REDIS_URL"] = via(env["REDIS_URL"], network.services_address, REDIS_PORT)
            env["CELERY_BROKER_URL"] = via(env["CELERY_BROKER_URL"], network.services_address, REDIS_PORT)
        yield fleet
    finally:
        for proc in reversed(fleet.procs):
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                print(f"stopping {proc.log.name}: {exc}")
        print(fleet.outputs())
        network.teardown()


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
