"""A live appliance for the gateway tests: a real engine replica process on a tiny random checkpoint, and the
gateway under uvicorn in a subprocess, both on free ports, against the real PostgreSQL test database and Redis.

Rows the server must see are committed (outside test transactions) and live until the test database is dropped.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appliance.runtime.replica_auth import SECRET_ENV, bearer
from tests.conftest import flush_database

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENGINE_SECRET = "gateway-tests-replica-credential"


@dataclass
class Engine:
    process: subprocess.Popen
    port: int | None
    model_dir: Path
    socket_path: str = ""
    secret: str = ENGINE_SECRET  # its credential (Replica.secret)

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.secret)

    def client(self, **kwargs) -> httpx.Client:
        """A client of the replica's internal server that sends its credential."""
        if self.socket_path:
            return httpx.Client(transport=httpx.HTTPTransport(uds=self.socket_path), base_url="http://engine",
                                headers=self.auth, **kwargs)
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=self.auth, **kwargs)

    def health(self) -> dict:
        with self.client(timeout=5) as client:
            return client.get("/health").json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def engine_aborts(engine: Engine) -> float:
    """How many requests the replica has finished as aborted (its own counter)."""
    from prometheus_client.parser import text_string_to_metric_families

    with engine.client(timeout=5) as client:
        text = client.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "appliance_engine_requests_finished_total" and s.labels.get("finish_reason") == "abort")


class PendingEngine:
    """An engine process launched but perhaps not ready yet."""

    def __init__(self, model_dir: Path, log_path: Path, uds: str | None = None) -> None:
        argv = [sys.executable, "-m", "appliance.runtime.server", "--model", str(model_dir), "--device", "cpu",
                *(["--uds", uds] if uds else ["--port", "0", "--host", "127.0.0.1"])]
        self.model_dir, self.log_path = model_dir, log_path
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(log_path, "wb"),
                                        env={**os.environ, SECRET_ENV: ENGINE_SECRET})

    def wait(self, timeout_s: float = 180) -> Engine:
        """Wait for the READY line."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith(b"READY unix:"):
                return Engine(self.process, None, self.model_dir, line.split(b":", 1)[1].strip().decode())
            if line.startswith(b"READY"):
                return Engine(self.process, int(line.split()[1].rsplit(b":", 1)[1]), self.model_dir)
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"engine exited with {self.process.returncode}; see {self.log_path}")
        self.process.kill()
        raise RuntimeError(f"engine not ready in {timeout_s}s; see {self.log_path}")


def start_engine(model_dir: Path, log_path: Path, timeout_s: float = 180) -> Engine:
    """`python -m appliance.runtime.server ...`, waiting for its READY line."""
    return PendingEngine(model_dir, log_path).wait(timeout_s)


@pytest.fixture(scope="session")
def engines(tiny_llama, tmp_path_factory) -> dict[str, PendingEngine]:
    """The shared replica (TCP), and a second one on a Unix socket (launched now, loading in parallel) for a test
    that kills it."""
    logs = tmp_path_factory.mktemp("engines")
    pending = {"main": PendingEngine(tiny_llama, logs / "main.log"),
               "fragile": PendingEngine(tiny_llama, logs / "fragile.log", uds=str(logs / "fragile.sock"))}
    yield pending
    for p in pending.values():
        if p.process.poll() is None:
            p.process.kill()
            p.process.wait()


@pytest.fixture(scope="session")
def engine(engines) -> Engine:
    eng = engines["main"].wait()
    yield eng
    eng.stop()


@dataclass
class Appliance:
    url: str
    process: subprocess.Popen

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def metrics(self) -> str:
        """GET /metrics as Prometheus does, with the scrape token (the test settings' APPLIANCE_METRICS_TOKEN)."""
        from django.conf import settings

        response = httpx.get(f"{self.url}/metrics", headers=bearer(settings.METRICS_TOKEN), timeout=30)
        assert response.status_code == 200, response.text[:300]
        return response.text


def committed(fn, *args, **kwargs):
    """Run ORM work on its own connection in autocommit, outside any test transaction, so the server sees it.

    Tests run inside pytest-django's transaction (``django_db``); reads there still see these commits.
    """
    from django.db import connections

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def make_deployment(name: str, model_name: str, model_dir: Path | str, engine: Engine | None = None,
                    context_length: int = 256):
    """Model + version + active Deployment; with `engine`, a READY replica pointing at it."""
    from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica

    model, _ = Model.objects.get_or_create(name=model_name, defaults={"architecture": "LlamaForCausalLM",
                                                                       "family": "llama"})
    version, _ = ModelVersion.objects.get_or_create(model=model, version=1, defaults={
        "source_uri": str(model_dir), "context_length": context_length})
    dep = Deployment.objects.create(name=name, model_version=version, status=Deployment.Status.RUNNING,
                                    min_replicas=0, desired_replicas=0 if engine is None else 1)
    if engine is not None:
        node, _ = Node.objects.get_or_create(name="test-node")
        Replica.objects.create(deployment=dep, node=node, state=Replica.State.READY, host="127.0.0.1",
                               port=engine.port, socket_path=engine.socket_path, secret=engine.secret)
    return dep


def make_key(tenant_name: str, models: list[str] | None, **quotas) -> tuple[object, str]:
    """A new tenant (quotas on the tenant) and a key; returns (key row, plaintext)."""
    from appliance.tenancy.services import create_api_key, create_tenant

    tenant = create_tenant(f"{tenant_name}-{uuid.uuid4().hex[:8]}", models=models, **quotas)
    key, plaintext = create_api_key(tenant)
    forget_quota_state(tenant.id, key.id)
    return key, plaintext


def forget_quota_state(tenant_id: int, key_id: int) -> None:
    """Ids restart after another package flushes the database, and quota counters other packages left in the test
    Redis (an in-flight slot lives for GATEWAY_INFLIGHT_TTL_S) would count against a new tenant with the same id."""
    from django.conf import settings

    from appliance.gateway import keys

    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    for scope, scope_id in (("tenant", tenant_id), ("key", key_id)):
        stale = list(client.scan_iter(f"{keys.PREFIX}:quota:{scope}:{scope_id}:*"))
        if stale:
            client.delete(*stale)


@dataclass
class World:
    appliance: Appliance
    engine: Engine
    model: str  # a deployment name acme may use
    other_model: str  # globex's, which acme must never see
    cold_model: str  # acme's, with no replica
    acme_key: str
    globex_key: str


@pytest.fixture(scope="package")
def flush_committed_rows(django_db_setup, django_db_blocker):
    """This package commits rows outside test transactions (the gateway process must see them); remove them all
    when the package is done so later packages start from an empty database."""
    yield
    flush_database(django_db_blocker)


@pytest.fixture(scope="package")
def world(django_db_setup, django_db_blocker, flush_committed_rows, engine, tmp_path_factory) -> World:
    from django.conf import settings

    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    def setup() -> tuple[str, str]:
        make_deployment("tiny-chat", "tiny", engine.model_dir, engine, context_length=_context(engine))
        make_deployment("secret-model", "secret", engine.model_dir, engine)
        make_deployment("tiny-cold", "tiny", engine.model_dir, None)
        return make_key("acme", ["tiny"])[1], make_key("globex", ["secret"])[1]

    with django_db_blocker.unblock():
        acme, globex = committed(setup)
    gateway = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield World(gateway, engine, "tiny-chat", "secret-model", "tiny-cold", acme, globex)
    stop_gateway(gateway)


@pytest.fixture(scope="package")
def tools_model(world, checkpoint_factory, django_db_blocker, tmp_path_factory):
    """An openai client for "tiny-tools": a replica of a tiny Qwen2 with a tools chat template (family qwen2: hermes
    calls), shared by the structured-output, tool-calling and Responses tests."""
    import openai

    from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica
    from appliance.runtime.tiny_models import TOOLS_CHAT_TEMPLATE

    model_dir = checkpoint_factory("qwen2", chat_template=TOOLS_CHAT_TEMPLATE, max_position_embeddings=2048)
    engine = start_engine(model_dir, tmp_path_factory.mktemp("tools-engine") / "engine.log")

    def setup() -> str:
        model = Model.objects.create(name="tiny-qwen", architecture="Qwen2ForCausalLM", family="qwen2")
        version = ModelVersion.objects.create(model=model, version=1, source_uri=str(model_dir), context_length=2048)
        dep = Deployment.objects.create(name="tiny-tools", model_version=version, status=Deployment.Status.RUNNING,
                                        min_replicas=0, desired_replicas=1)
        node, _ = Node.objects.get_or_create(name="test-node")
        Replica.objects.create(deployment=dep, node=node, state=Replica.State.READY, host="127.0.0.1",
                               port=engine.port, secret=engine.secret)
        return make_key("toolsmith", ["tiny-qwen"])[1]

    with django_db_blocker.unblock():
        key = committed(setup)
    with openai.OpenAI(base_url=world.appliance.v1, api_key=key, max_retries=0, timeout=60) as c:
        yield c
    engine.stop()


def start_gateway(log_dir: Path, **env_overrides: str) -> Appliance:
    """The gateway under uvicorn, against the test database and Redis, on a free port."""
    from django.conf import settings
    from django.db import connection

    db_name = connection.settings_dict["NAME"]
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "appliance.settings_test",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}", "REDIS_URL": settings.REDIS_URL,
           "GATEWAY_COLD_START_TIMEOUT_S": "1.5", "GATEWAY_AUTH_CACHE_S": "1", "GATEWAY_ROUTE_CACHE_S": "0.5",
           "GATEWAY_HEADROOM_TTL_S": "30",  # early dispatch stays on between a test's requests, however slow
           "LOG_LEVEL": "WARNING", **env_overrides}
    log_path = log_dir / "uvicorn.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "appliance.asgi:application", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/v1/models", timeout=2)
            return Appliance(url, proc)
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start; see {log_path}:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)


def stop_gateway(gateway: Appliance) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(10)
    except subprocess.TimeoutExpired:
        gateway.process.kill()


def _context(engine: Engine) -> int:
    try:
        return int(engine.health().get("max_model_len") or 256)
    except Exception:
        return 256


@pytest.fixture
def client(world):
    import openai

    with openai.OpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0, timeout=60) as c:
        yield c


@pytest.fixture
async def aclient(world):
    import openai

    async with openai.AsyncOpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0,
                                  timeout=60) as c:
        yield c


def raw_post(world: World, path: str, body, key: str | None = None, **kw) -> httpx.Response:
    """POST to /v1/<path>; key None: acme's key, "": no Authorization header."""
    key = world.acme_key if key is None else key
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{world.appliance.v1}/{path}", content=content, headers=headers, timeout=60, **kw)
