"""Jobs fixtures. The task code runs ORM work on the gateway's DB threads (appliance.gateway.db), whose connections
persist: close them before the test database is dropped."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def closes_gateway_connections(django_db_setup):
    yield
    from appliance.gateway.db import close_connections

    close_connections()


# --- a live appliance: engine replica, gateway (uvicorn), Celery worker (queues default + batch) -----------------

import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.conftest import flush_database  # noqa: E402
from tests.gateway.conftest import Engine, committed, free_port, make_deployment, start_engine  # noqa: E402
from tests.lifecycle.conftest import Proc, wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("JOBS_TEST_BROKER_URL", "redis://127.0.0.1:6379/8")
SLICE_S = 0.25  # batch tasks requeue themselves every 0.25 s, so even a fast machine runs a batch in several deliveries


@dataclass
class Live:
    url: str
    engine: Engine
    gateway: Proc
    worker: Proc

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture(scope="package", autouse=True)
def flush_committed_rows(django_db_setup, django_db_blocker):
    """Tenants, keys and deployments here are committed for the server processes; remove them afterwards."""
    yield
    flush_database(django_db_blocker)


@pytest.fixture(scope="session")
def live(django_db_setup, django_db_blocker, tiny_llama, tmp_path_factory) -> Live:
    """Processes only (rows are made per test, so transactional tests' table flushes cannot remove them)."""
    import httpx
    import redis
    from django.conf import settings
    from django.db import connection

    redis.Redis.from_url(BROKER_URL).flushdb()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # quota counters of a previous run's (reused) tenant ids
    logs = tmp_path_factory.mktemp("jobs-live")
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "appliance.settings_test",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "REDIS_URL": settings.REDIS_URL, "CELERY_BROKER_URL": BROKER_URL, "APPLIANCE_HOME": str(logs / "home"),
           "GATEWAY_AUTH_CACHE_S": "0.5", "GATEWAY_ROUTE_CACHE_S": "0.5", "LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "JOBS_BATCH_SLICE_S": str(SLICE_S)}
    port = free_port()
    gateway = Proc([sys.executable, "-m", "uvicorn", "appliance.asgi:application", "--host", "127.0.0.1",
                    "--port", str(port), "--no-access-log"], env, logs / "gateway.log")
    worker = Proc([sys.executable, "-m", "celery", "-A", "appliance", "worker", "-l", "info", "-c", "1",
                   "-n", f"jobs-{uuid.uuid4().hex[:6]}@%h", "--without-mingle", "--without-gossip",
                   "-Q", "default,batch"], env, logs / "worker.log")
    engine = start_engine(tiny_llama, logs / "engine.log")  # while the gateway and the worker start
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/v1/models", timeout=2).status_code == 401
        except httpx.TransportError:
            assert gateway.popen.poll() is None, gateway.output()[-3000:]
            return False

    try:
        wait_until(up, 90, "the gateway to answer")
        worker.wait_for(" ready.", 90)
        yield Live(url, engine, gateway, worker)
    finally:
        for proc in (worker, gateway):
            proc.stop()
        engine.stop()
        print(f"jobs live logs: {logs}")


@dataclass
class Tenant:
    id: int
    key: str
    model: str  # a deployment name this tenant may use


@pytest.fixture
def make_tenant(live, django_db_blocker):
    """make_tenant(**quotas) -> Tenant with a key and its own deployment of the tiny model on the live replica."""

    def make(**quotas) -> Tenant:
        def rows() -> Tenant:
            from appliance.tenancy.services import create_api_key, create_tenant

            suffix = uuid.uuid4().hex[:8]
            dep = make_deployment(f"tiny-{suffix}", f"tiny-{suffix}", live.engine.model_dir, live.engine)
            tenant = create_tenant(f"jobs-{suffix}", models=[f"tiny-{suffix}"], **quotas)
            return Tenant(tenant.id, create_api_key(tenant)[1], dep.name)

        with django_db_blocker.unblock():
            return committed(rows)

    return make


@pytest.fixture
def openai_client(live):
    """openai_client(key) -> the official client against the live appliance."""
    import openai

    clients = []

    def make(key: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=live.v1, api_key=key, max_retries=0, timeout=60)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
