"""EngineSample: the sampler against a real engine replica server process, and the derivations it relies on."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica
from appliance.runtime.replica_auth import SECRET_ENV, bearer
from appliance.telemetry import engine_sampler
from appliance.telemetry.engine_sampler import histogram_quantile, parse_metrics
from appliance.telemetry.models import EngineSample

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sampler-test-replica-credential"


@pytest.fixture
def engine_server(tiny_llama):
    """A real `python -m appliance.runtime.server` process on a free port; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.runtime.server", "--model", str(tiny_llama), "--device", "cpu",
         "--port", "0", "--max-num-seqs", "8"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, SECRET_ENV: SECRET},
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://"), f"replica did not start: {line!r}"
        yield line.split(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(15)


def generate(url: str, rid: str, max_tokens: int) -> None:
    body = {"request_id": rid, "prompt": "the quick brown fox", "sampling": {"max_tokens": max_tokens,
                                                                             "ignore_eos": True}}
    with httpx.stream("POST", f"{url}/generate", json=body, headers=bearer(SECRET), timeout=60) as response:
        assert response.status_code == 200
        for _ in response.iter_lines():
            pass


@pytest.mark.django_db
def test_sampler_reads_a_live_engine_replica(engine_server):
    host, port = engine_server.removeprefix("http://").rsplit(":", 1)
    model = Model.objects.create(name="tiny")
    version = ModelVersion.objects.create(model=model, version=1, source_uri="/x")
    deployment = Deployment.objects.create(name="tiny", model_version=version, status="running")
    node = Node.objects.create(name="n1")
    replica = Replica.objects.create(deployment=deployment, node=node, state="ready", host=host, port=int(port),
                                     secret=SECRET)  # the sampler reads health and metrics with it
    Replica.objects.create(deployment=deployment, node=node, index=1, state="starting", port=1)  # not sampled

    [first] = engine_sampler.sample_engines(node)
    assert first.replica == replica and first.interval_s is None and first.tokens_per_s is None
    assert first.running == 0 and first.kv_blocks_used == 0 and first.kv_blocks_total > 0
    assert first.max_num_seqs == 8

    threads = [threading.Thread(target=generate, args=(engine_server, f"r{i}", 400)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    busy = None
    while time.monotonic() < deadline:
        [busy] = engine_sampler.sample_engines(node)
        if busy.running >= 2:
            break
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert busy is not None and 2 <= busy.running <= 3, busy.__dict__
    assert busy.kv_blocks_used >= busy.running and 0 < busy.kv_use_pct < 100

    [done] = engine_sampler.sample_engines(node)
    assert done.running == 0 and done.kv_blocks_used == 0
    assert done.generation_tokens == 1200
    assert done.tokens_per_s > 0 and done.interval_s > 0
    window = EngineSample.objects.filter(replica=replica).exclude(pk=first.pk)
    assert sum(s.tokens_per_s * s.interval_s for s in window) == pytest.approx(1200, rel=1e-6)
    assert done.ttft_p50_s is not None or busy.ttft_p50_s is not None
    assert 0 < (done.itl_p50_s or busy.itl_p50_s) < 5
    for s in window:  # the tails from the same interval's buckets: never below the median
        for name in ("ttft", "itl"):
            p50, p95, p99 = (getattr(s, f"{name}_p{q}_s") for q in (50, 95, 99))
            assert (p50 is None) == (p95 is None) == (p99 is None)
            assert p50 is None or p50 <= p95 <= p99
    queued = [s for s in window if s.queue_p50_s is not None]
    assert queued and all(0 <= s.queue_p50_s <= s.queue_p95_s < 5 for s in queued)
    assert 1 <= max(s.seqs_per_step for s in window) <= 3
    assert max(s.batch_occupancy_pct for s in window) <= 3 / 8 * 100


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {"0.1": 0, "0.2": 10, "0.4": 20, "+Inf": 20}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.5, {"0.1": 0, "+Inf": 0}) is None
    assert histogram_quantile(0.5, {"0.1": 0, "+Inf": 4}) == 0.1


def test_engine_restart_counts_from_zero(db):
    text = """# TYPE appliance_engine_generation_tokens counter
appliance_engine_generation_tokens_total{model="m"} %d
"""
    model = Model.objects.create(name="m")
    version = ModelVersion.objects.create(model=model, version=1, source_uri="/x")
    replica = Replica.objects.create(deployment=Deployment.objects.create(name="m", model_version=version),
                                     node=Node.objects.create(name="n"))
    before = engine_sampler.build_sample(replica, parse_metrics(text % 500), None, time.time())
    before.save()
    after = engine_sampler.build_sample(replica, parse_metrics(text % 30), before, before.created_at.timestamp() + 10)
    assert after.tokens_per_s == pytest.approx(3.0)
    steady = engine_sampler.build_sample(replica, parse_metrics(text % 600), before,
                                         before.created_at.timestamp() + 10)
    assert steady.tokens_per_s == pytest.approx(10.0) and steady.ttft_p50_s is None


def test_old_engine_samples_are_pruned(db):
    from datetime import timedelta

    from django.utils import timezone

    from appliance.telemetry.tasks import prune_samples

    model = Model.objects.create(name="m")
    version = ModelVersion.objects.create(model=model, version=1, source_uri="/x")
    replica = Replica.objects.create(deployment=Deployment.objects.create(name="m", model_version=version),
                                     node=Node.objects.create(name="n"))
    old, new = EngineSample.objects.create(replica=replica), EngineSample.objects.create(replica=replica)
    EngineSample.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))
    assert prune_samples() == 1
    assert list(EngineSample.objects.values_list("pk", flat=True)) == [new.pk]
