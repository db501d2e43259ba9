"""Shared fixtures. Small random-weight checkpoints are built once per session and cached on disk."""
from __future__ import annotations

import os
from pathlib import Path

# Before anything imports torch: spinning OpenMP workers make every process on a shared 2-core machine crawl.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Build (or reuse within the session) a random-weight HF checkpoint: factory(arch="llama", **overrides)."""
    from appliance.runtime.tiny_models import make_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[tuple, Path] = {}

    def factory(arch: str = "llama", **overrides) -> Path:
        key = (arch, repr(sorted(overrides.items())))
        if key not in cache:
            cache[key] = make_checkpoint(root / f"{arch}-{len(cache)}", arch, **overrides)
        return cache[key]

    return factory


@pytest.fixture(scope="session")
def tiny_llama(checkpoint_factory) -> Path:
    return checkpoint_factory("llama")


def flush_database(django_db_blocker) -> None:
    """Empty every table. For packages whose tests commit rows outside test transactions (a server process must see
    them), so later packages start from an empty database."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


def use_broker(url: str) -> str:
    """Make this test process's Celery app publish to `url`, dropping connections pooled for the previous broker
    (as Celery does after a fork); returns the previous URL. Packages that start real workers on their own broker
    call it, so an earlier package's pooled producer cannot send their tasks elsewhere."""
    from appliance.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    return previous


@pytest.fixture(scope="session")
def fault_report():
    """The fault table (tests/faults/report.py): tests marked `faults` add a row each; written at the session's end
    to $FAULTS_REPORT_DIR (default var/faults/)."""
    from tests.faults.report import FaultReport

    report = FaultReport()
    yield report
    report.write(Path(os.environ.get("FAULTS_REPORT_DIR", Path(__file__).resolve().parents[1] / "var" / "faults")))
