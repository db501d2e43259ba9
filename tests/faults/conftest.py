"""One appliance for the fault suite, on private PostgreSQL and Redis servers (services.py) that tests may stop:
the gateway under uvicorn, the node agent and the engine replica it starts (a tiny random checkpoint), each a real
process with its own log. Rows are made by a subprocess (seed.py) and read back with plain SQL.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.lifecycle.conftest import ROOT, Proc, wait_until

from .services import PrivatePostgres, PrivateRedis, free_port

MODEL = "sturdy"


@dataclass
class Stack:
    pg: PrivatePostgres
    redis: PrivateRedis
    env: dict
    home: Path
    gateway: Proc
    agent: Proc
    url: str
    deployment_id: int

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def seed(self, **spec) -> dict:
        done = subprocess.run([sys.executable, "-m", "tests.faults.seed", json.dumps(spec)], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.rsplit("SEED ", 1)[1])

    def key(self, **quotas) -> dict:
        return self.seed(op="key", models=[MODEL], quotas=quotas)

    def ready_replica(self) -> tuple[int, int, int] | None:
        """(replica id, pid, restart count) of the deployment's READY replica."""
        rows = self.pg.query("SELECT id, pid, restart_count FROM catalog_replica WHERE deployment_id = %s AND "
                             "state = 'ready' AND pid IS NOT NULL", self.deployment_id)
        return rows[0] if rows else None

    def usage(self, tenant_id: int) -> dict[str, tuple[int, int]]:
        """request id -> (status, completion tokens) of the tenant's usage rows; a doubled row fails here."""
        rows = self.pg.query("SELECT request_id, status_code, completion_tokens FROM tenancy_usagerecord "
                             "WHERE tenant_id = %s", tenant_id)
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), "a request was recorded twice"
        return {r[0]: (r[1], r[2]) for r in rows}


def gateway_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/models", timeout=2).status_code == 401
    except httpx.TransportError:
        return False


@pytest.fixture(scope="package")
def stack(tmp_path_factory, tiny_llama) -> Stack:
    root = tmp_path_factory.mktemp("faults")
    pg = PrivatePostgres()
    redis = PrivateRedis(root)
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "appliance.settings_test", "DATABASE_URL": pg.url,
           "REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url.replace("/0", "/1"), "APPLIANCE_HOME": str(home),
           "ARTIFACT_STORE_URL": str(home / "artifacts"), "APPLIANCE_RUN_DIR": str(home / "run"),
           "NODE_NAME": "faults-node", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING",
           "APPLIANCE_RESTART_BACKOFF_BASE_S": "0.5", "APPLIANCE_NODE_LOST_AFTER_S": "30"}
    procs: list[Proc] = []
    try:
        stack = Stack(pg, redis, env, home, None, None, "", 0)  # type: ignore[arg-type]
        stack.seed(op="migrate")
        stack.deployment_id = stack.seed(op="serve", model=MODEL, path=str(tiny_llama))["deployment_id"]
        port = free_port()
        stack.gateway = Proc([sys.executable, "-m", "uvicorn", "appliance.asgi:application", "--host", "127.0.0.1",
                              "--port", str(port), "--no-access-log"],
                             {**env, "GATEWAY_ROUTE_CACHE_S": "0.5", "GATEWAY_AUTH_CACHE_S": "1",
                              "GATEWAY_COLD_START_TIMEOUT_S": "60", "GATEWAY_LAST_REQUEST_WRITE_S": "1"},
                             root / "gateway.log")
        procs.append(stack.gateway)
        stack.agent = Proc([sys.executable, "manage.py", "run_agent", "--node", "faults-node", "--device", "cpu",
                            "--cores", "2", "--tick", "0.3"], env, root / "agent.log")
        procs.append(stack.agent)
        stack.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: gateway_up(stack.url), 90, "the gateway to answer")
        wait_until(stack.ready_replica, 180, "the first replica")
        yield stack
    finally:
        for proc in procs:
            proc.stop()
            print(f"--- {proc.log.name} ---\n{proc.output()[-3000:]}")
        redis.stop()
        pg.destroy()
