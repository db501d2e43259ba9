"""Lifecycle fixtures: real Celery worker processes and real node agents, against the test PostgreSQL database.

Workers and agents are separate processes, so tests that use them need committed data (transactional_db).
Broker: Redis db 4 (CELERY_BROKER_URL overrides it).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import use_broker

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("LIFECYCLE_TEST_BROKER_URL", "redis://127.0.0.1:6379/4")
ENGINE_SERVER = "appliance.runtime.server"


@pytest.fixture
def lc_home(tmp_path, settings, monkeypatch):
    """Per-test APPLIANCE_HOME and artifact store, shared by this process and the ones it starts."""
    home = tmp_path / "home"
    home.mkdir()
    settings.APPLIANCE_HOME = home
    settings.ARTIFACT_STORE_URL = str(home / "artifacts")
    settings.RUN_DIR = home / "run"
    settings.NODE_NAME = "lc-node"
    for name, value in {"APPLIANCE_COMPILE_HEARTBEAT_S": "0.5", "APPLIANCE_COMPILE_STALE_AFTER_S": "3",
                        "APPLIANCE_RESTART_BACKOFF_BASE_S": "0.5", "APPLIANCE_NODE_LOST_AFTER_S": "30"}.items():
        monkeypatch.setenv(name, value)
    return home


@pytest.fixture
def process_env(lc_home, transactional_db):
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    use_broker(BROKER_URL)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "appliance.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": BROKER_URL,
        "APPLIANCE_HOME": str(lc_home),
        "ARTIFACT_STORE_URL": settings.ARTIFACT_STORE_URL,
        "APPLIANCE_RUN_DIR": str(settings.RUN_DIR),
        "PYTHONPATH": str(ROOT),
        "NODE_NAME": "lc-node",
        "PYTHONUNBUFFERED": "1",
    }
    return env


class Proc:
    def __init__(self, cmd: list[str], env: dict, log: Path) -> None:
        self.log = log
        self._f = open(log, "wb")
        self.popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._f, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited ({self.popen.returncode}):\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
        self.popen.wait(15)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._f.close()


@pytest.fixture
def start_worker(process_env, tmp_path):
    """start_worker(**env) -> Proc: a real `celery worker` (prefork, 1 child) consuming the broker; `env` adds to
    its environment (e.g. NODE_NAME="node-b" for a worker of another node)."""
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()
    procs: list[Proc] = []

    def start(**env) -> Proc:
        name = f"lc-{uuid.uuid4().hex[:6]}"
        proc = Proc([sys.executable, "-m", "celery", "-A", "appliance", "worker", "-l", "info", "-c", "1",
                     "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "-Q", "default"],
                    {**process_env, **{k: str(v) for k, v in env.items()}}, tmp_path / f"{name}.log")
        procs.append(proc)
        proc.wait_for(" ready.", 60)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_agent(process_env, tmp_path):
    """start_agent(cores=4, server_module=..., device="cpu") -> Proc: a real `manage.py run_agent` for node
    'lc-node'."""
    procs: list[Proc] = []

    def start(cores: int = 4, server_module: str = ENGINE_SERVER, tick: float = 0.3, device: str = "cpu",
              **env) -> Proc:
        proc = Proc([sys.executable, "manage.py", "run_agent", "--node", "lc-node", "--device", device,
                     "--cores", str(cores), "--tick", str(tick), "--server-module", server_module],
                    {**process_env, **{k: str(v) for k, v in env.items()}}, tmp_path / f"agent-{len(procs)}.log")
        procs.append(proc)
        proc.wait_for("node agent on lc-node", 60)
        return proc

    yield start
    for proc in procs:
        proc.stop()
        print(f"--- {proc.log.name} ---\n{proc.output()[-4000:]}")  # shown when the test fails


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def register_version():
    """register_version(name, path) -> ModelVersion (catalog rows as register_model would make them)."""
    from appliance.catalog.models import Model, ModelVersion

    def register(name: str, path: Path, dtype: str = "float32") -> ModelVersion:
        model, _ = Model.objects.get_or_create(name=name, defaults={"architecture": "LlamaForCausalLM"})
        number = (model.versions.order_by("-version").values_list("version", flat=True).first() or 0) + 1
        return ModelVersion.objects.create(model=model, version=number, source_uri=str(path), dtype=dtype)

    return register


@pytest.fixture
def start_gateway(process_env, tmp_path):
    """start_gateway(**env) -> base URL of the appliance's web process (uvicorn) on a free port."""
    import socket

    import httpx

    procs: list[Proc] = []

    def start(**env) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = Proc([sys.executable, "-m", "uvicorn", "appliance.asgi:application", "--host", "127.0.0.1",
                     "--port", str(port), "--no-access-log"],
                    {**process_env, "GATEWAY_ROUTE_CACHE_S": "0.3", "GATEWAY_AUTH_CACHE_S": "1",
                     "GATEWAY_LAST_REQUEST_WRITE_S": "1", **{k: str(v) for k, v in env.items()}},
                    tmp_path / f"gateway-{len(procs)}.log")
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(f"{url}/v1/models", timeout=2).status_code in (200, 401)
            except httpx.TransportError:
                assert proc.popen.poll() is None, proc.output()[-3000:]
                return False

        wait_until(up, 90, "the gateway to answer")
        return url

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def api_key():
    """api_key(models) -> a tenant's plaintext API key allowed to use those catalog models."""
    from appliance.tenancy.services import create_api_key, create_tenant

    def make(models: list[str]) -> str:
        tenant = create_tenant(f"lc-{uuid.uuid4().hex[:8]}", models=models)
        return create_api_key(tenant)[1]

    return make


@pytest.fixture
def s3_client(monkeypatch):
    """An S3 client on moto's in-process S3 (a stand-in for S3, not AWS), with test credentials."""
    moto = pytest.importorskip("moto")
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        yield boto3.client("s3")
