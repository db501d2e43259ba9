"""The appliance's own processes for console tests that walk the whole lifecycle: a real Celery worker, the node
agent (which starts real engine replicas) and the telemetry sampler, against the live test database.

The broker is this test run's Redis database (APPLIANCE_TEST_REDIS_DB), so parallel runs never share a queue.
"""
from __future__ import annotations

import os
import sys
import uuid

import pytest

from tests.conftest import use_broker
from tests.lifecycle.conftest import ROOT, Proc

NODE = "console-node"


@pytest.fixture
def appliance_env(tmp_path, settings, transactional_db):
    from django.db import connection


    home = tmp_path / "home"
    home.mkdir()
    settings.APPLIANCE_HOME = home
    settings.ARTIFACT_STORE_URL = str(home / "artifacts")
    settings.RUN_DIR = home / "run"
    settings.NODE_NAME = NODE
    broker = settings.CELERY_BROKER_URL
    previous = use_broker(broker)
    db = connection.settings_dict
    yield {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "appliance.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": broker,
        "APPLIANCE_HOME": str(home),
        "ARTIFACT_STORE_URL": settings.ARTIFACT_STORE_URL,
        "APPLIANCE_RUN_DIR": str(settings.RUN_DIR),
        "NODE_NAME": NODE,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    use_broker(previous)


@pytest.fixture
def appliance_processes(appliance_env, tmp_path):
    """Start a Celery worker, the node agent (2 CPU engine slots) and run_telemetry (1 s interval) together;
    returns them once each says it is up."""
    procs = {
        "worker": Proc([sys.executable, "-m", "celery", "-A", "appliance", "worker", "-l", "info", "-c", "1",
                        "-n", f"console-{uuid.uuid4().hex[:6]}@%h", "--without-mingle", "--without-gossip",
                        "-Q", "default"], appliance_env, tmp_path / "worker.log"),
        "agent": Proc([sys.executable, "manage.py", "run_agent", "--node", NODE, "--cores", "2", "--tick", "0.3"],
                      appliance_env, tmp_path / "agent.log"),
        "telemetry": Proc([sys.executable, "manage.py", "run_telemetry", "--node", NODE, "--interval", "1"],
                          appliance_env, tmp_path / "telemetry.log"),
    }
    try:
        procs["worker"].wait_for(" ready.", 90)
        procs["agent"].wait_for(f"node agent on {NODE}", 90)
        procs["telemetry"].wait_for(f"telemetry on {NODE}", 90)
        yield procs
    finally:
        for name, proc in procs.items():
            proc.stop()
            print(f"--- {name} ---\n{proc.output()[-3000:]}")  # shown when the test fails
