"""Compile once across the fleet: the same compile asked for by two nodes at once is one job, run by one worker, and
a job reaching an artifact another job is building waits for it. PostgreSQL, so the locks are the real ones."""
from __future__ import annotations

import re
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from appliance.catalog.models import Deployment
from appliance.lifecycle.models import CompileJob

from .conftest import Proc, wait_until

SUCCEEDED = re.compile(r"compile_model\[[^\]]+\] succeeded in [0-9.]+s: 'succeeded'")


@pytest.mark.celery
def test_compile_requested_from_two_nodes_at_once_runs_once_and_both_deployments_get_its_artifact(
        start_worker, process_env, register_version, tiny_llama, tmp_path):
    version = register_version("tiny", tiny_llama)
    deployments = [Deployment.objects.create(name=f"tiny-{n}", model_version=version) for n in ("a", "b")]
    workers = [start_worker(NODE_NAME="node-a"), start_worker(NODE_NAME="node-b")]
    go = tmp_path / "go"
    requesters = [Proc([sys.executable, "-m", "tests.lifecycle.compile_requester", str(version.pk), str(go), "1.5"],
                       {**process_env, "NODE_NAME": node}, tmp_path / f"request-{node}.log")
                  for node in ("node-a", "node-b")]
    try:
        for proc in requesters:
            proc.wait_for("ready", 90)
        go.touch()  # both ask now; each holds its transaction 1.5 s, so neither sees the other's row committed
        for proc in requesters:
            proc.wait_for("committed", 60)
    finally:
        for proc in requesters:
            proc.stop()
    job_ids = {int(re.search(r"job (\d+)", proc.output()).group(1)) for proc in requesters}
    assert len(job_ids) == 1, [proc.output() for proc in requesters]
    assert CompileJob.objects.count() == 1

    job = CompileJob.objects.get()
    wait_until(lambda: job.refresh_from_db() or job.is_finished, 180, "the compile to finish")
    assert job.status == "succeeded", job.error + job.log
    assert job.attempts == 1 and job.log.count("attempt 1 started") == 1 and job.log.count("converting weights") == 1
    # the second node's request re-sent the job's message: the worker that got it ran nothing
    ran = wait_until(lambda: sum(len(SUCCEEDED.findall(w.output())) for w in workers), 60, "the task to return")
    assert ran == 1 and job.worker.split("@")[0] in {w.log.stem for w in workers}
    wait_until(lambda: all(Deployment.objects.get(pk=d.pk).artifact_id == job.artifact_id for d in deployments), 30,
               "both deployments to get the artifact")


@pytest.mark.django_db(transaction=True)
def test_a_job_reaching_an_artifact_another_job_is_building_waits_instead_of_compiling_it_again(
        register_version, tiny_llama, lc_home):
    from appliance.lifecycle.artifact_store import compute_digest
    from appliance.lifecycle.compile_runner import run_compile_job
    from appliance.lifecycle.converter import source_checksum, toolchain_version

    first, second = register_version("tiny", tiny_llama), register_version("tiny-again", tiny_llama)  # same weights
    waiter = CompileJob.objects.create(model_version=second)
    digest = compute_digest(source_checksum(tiny_llama, ""), waiter.options(), toolchain_version("cpu"))
    # A stand-in for a job building this artifact on another node: running, heartbeating, holding the digest.
    holder = CompileJob.objects.create(model_version=first, status="running", digest=digest, worker="node-b stand-in",
                                       heartbeat_at=timezone.now())
    seen: dict[str, str] = {}

    def beat(seconds: float) -> None:  # what the other node's heartbeat thread would do
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            CompileJob.objects.filter(pk=holder.pk).update(heartbeat_at=timezone.now())
            time.sleep(0.2)

    def release_when_waiting() -> None:
        try:
            wait_until(lambda: beat(0) or "waiting for it" in CompileJob.objects.get(pk=waiter.pk).log, 60,
                       "the waiter", interval=0.2)
            beat(1.5)
            seen["stage_before_release"] = CompileJob.objects.get(pk=waiter.pk).stage
            CompileJob.objects.filter(pk=holder.pk).update(status="failed", finished_at=timezone.now())
        finally:
            connection.close()

    releaser = threading.Thread(target=release_when_waiting)
    releaser.start()
    assert run_compile_job(waiter.pk) == "succeeded"
    releaser.join(10)

    waiter.refresh_from_db()
    assert seen["stage_before_release"] == "waiting"  # nothing was converted while the other job held the digest
    assert f"job #{holder.pk} on node-b stand-in is building artifact {digest[:12]}" in waiter.log
    assert waiter.log.index("waiting for it") < waiter.log.index("converting weights")
    assert waiter.digest == digest and waiter.artifact.digest == digest and not waiter.cache_hit


@pytest.mark.django_db
def test_a_job_waiting_on_a_builder_whose_worker_died_requeues_it_and_builds_the_artifact_itself(
        register_version, tiny_llama, lc_home):
    from appliance.lifecycle.artifact_store import compute_digest
    from appliance.lifecycle.compile_runner import run_compile_job
    from appliance.lifecycle.converter import source_checksum, toolchain_version

    first, second = register_version("tiny", tiny_llama), register_version("tiny-again", tiny_llama)
    waiter = CompileJob.objects.create(model_version=second)
    digest = compute_digest(source_checksum(tiny_llama, ""), waiter.options(), toolchain_version("cpu"))
    # A stand-in for a job whose worker was killed mid-build on another node: running, silent for a minute.
    dead = CompileJob.objects.create(model_version=first, status="running", digest=digest, worker="node-b stand-in",
                                     attempts=1, heartbeat_at=timezone.now() - timedelta(minutes=1))

    assert run_compile_job(waiter.pk) == "succeeded"
    waiter.refresh_from_db()
    dead.refresh_from_db()
    assert dead.status == "queued" and "stopped heartbeating" in dead.log and "re-queued" in dead.log
    assert "waiting for it" in waiter.log and "converting weights" in waiter.log
    assert waiter.artifact.digest == digest


@pytest.mark.django_db
def test_a_message_delivered_twice_is_not_run_by_a_second_process_of_the_same_worker(
        register_version, tiny_llama, lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job
    from appliance.lifecycle.tasks import worker_identity

    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama), status="running",
                                    celery_task_id="t1", worker="celery@node-a pid 101", attempts=1,
                                    heartbeat_at=timezone.now())
    assert worker_identity("celery@node-a") != job.worker  # this process is another child of the same worker
    assert "is running on celery@node-a pid 101" in run_compile_job(job.pk, task_id="t1",
                                                                    worker=worker_identity("celery@node-a"))
    job.refresh_from_db()
    assert job.status == "running" and job.attempts == 1

    CompileJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert run_compile_job(job.pk, task_id="t1", worker=worker_identity("celery@node-a")) == "succeeded"
