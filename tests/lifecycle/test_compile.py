"""Compile jobs on real Celery workers: artifacts, the cache, redelivery, worker loss, and clear failures."""
from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from appliance.lifecycle.models import CompileJob
from appliance.lifecycle.services import request_compile

from .conftest import wait_until

FINISHED = ("succeeded", "failed", "cancelled")


def wait_finished(job: CompileJob, timeout: float = 120) -> CompileJob:
    def done():
        job.refresh_from_db()
        return job.status in FINISHED

    wait_until(done, timeout, f"compile job {job.pk} to finish")
    return job


@pytest.mark.celery
def test_second_compile_of_same_version_and_options_is_a_cache_hit(start_worker, register_version, tiny_llama):
    from safetensors import safe_open

    start_worker()
    version = register_version("tiny", tiny_llama)
    first = wait_finished(request_compile(version, "cpu", dtype="bfloat16"))
    assert first.status == "succeeded", first.error + first.log
    assert not first.cache_hit and first.attempts == 1 and first.percent == 100
    artifact_dir = Path(first.artifact.uri)
    manifest = json.loads((artifact_dir / "manifest.json").read_text())
    assert manifest["digest"] == first.digest == first.artifact.digest
    assert manifest["options"]["dtype"] == "bfloat16" and manifest["validation"]["warmup_tokens"] == [4, 4]
    assert manifest["validation"]["loader"] == "appliance.runtime.LLM"
    with safe_open(str(artifact_dir / "model.safetensors"), "pt") as f:
        assert all(str(f.get_tensor(k).dtype) == "torch.bfloat16" for k in f.keys())
    assert (artifact_dir / "tokenizer.json").is_file()

    second = wait_finished(request_compile(version, "cpu", dtype="bfloat16"))
    assert second.pk != first.pk and second.status == "succeeded"
    assert second.cache_hit is True
    assert second.artifact_id == first.artifact_id
    assert "cache hit" in second.log and "converting" not in second.log

    other = wait_finished(request_compile(version, "cpu", dtype="float32"))
    assert other.status == "succeeded" and not other.cache_hit and other.artifact_id != first.artifact_id


@pytest.mark.celery
@pytest.mark.slow
@pytest.mark.faults
def test_worker_killed_mid_compile_leaves_job_requeued_then_done(start_worker, register_version, tiny_llama,
                                                                 fault_report):
    from appliance.lifecycle.tasks import sweep_stale_compile_jobs

    worker = start_worker()
    job = request_compile(register_version("tiny", tiny_llama), "cpu")

    def mid_compile():
        job.refresh_from_db()
        return job.status == "running" and job.stage in ("converting", "validating")

    wait_until(mid_compile, 60, "the compile to reach converting/validating", interval=0.02)
    killed_in, t0 = job.stage, time.monotonic()
    worker.kill_group(signal.SIGKILL)
    job.refresh_from_db()
    assert job.status == "running"  # the dead worker cannot say anything; the sweep must notice

    start_worker()
    wait_until(lambda: sweep_stale_compile_jobs.delay() and _requeued(job), 30, "the sweep to re-queue the job",
               interval=1.0)
    job = wait_finished(job)
    fault_report.add("kill -9 the whole Celery worker mid-compile", 1, 1, int(job.status == "succeeded"),
                     f"killed while {killed_in}; the stale-job sweep (a beat task) re-queued it; it succeeded on attempt "
                     f"{job.attempts}, no half-written staging files", time.monotonic() - t0)
    assert job.status == "succeeded", job.error + job.log
    assert job.attempts == 2
    assert "stopped heartbeating during stage" in job.log and "re-queued" in job.log
    assert not list(Path(os.environ.get("APPLIANCE_HOME", "/nonexistent")).glob("compile-staging/*/model.safetensors"))


def _requeued(job: CompileJob) -> bool:
    job.refresh_from_db()
    return "re-queued" in job.log


@pytest.mark.django_db
def test_job_whose_worker_keeps_dying_is_failed_with_a_reason(register_version, tiny_llama, lc_home):
    from appliance.lifecycle.compile_runner import sweep_stale_jobs

    job = CompileJob.objects.create(
        model_version=register_version("tiny", tiny_llama), status="running", stage="converting", attempts=3,
        worker="w1@host", heartbeat_at=timezone.now() - timedelta(seconds=60),
    )
    fresh = CompileJob.objects.create(model_version=job.model_version, status="running", attempts=1,
                                      heartbeat_at=timezone.now())
    assert sweep_stale_jobs(max_attempts=3) == [(job.pk, "failed")]
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert "worker was lost 3 times" in job.error and "queue the compile again" in job.error
    assert fresh.status == "running"


@pytest.mark.django_db
def test_redelivered_finished_job_does_nothing(register_version, tiny_llama, lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama), status="succeeded",
                                    celery_task_id="t1", attempts=1, log="done\n")
    assert "already succeeded" in run_compile_job(job.pk, task_id="t1")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 1 and job.log == "done\n"


@pytest.mark.django_db
def test_duplicate_message_of_a_requeued_job_is_ignored(register_version, tiny_llama, lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama), celery_task_id="new")
    assert "re-queued as task new" in run_compile_job(job.pk, task_id="old")
    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 0


@pytest.mark.django_db
def test_neuron_target_fails_clearly_without_the_sdk(register_version, tiny_llama, lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama), target="neuron", tp_degree=2)
    run_compile_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith("Neuron SDK not installed") and "choose target cpu" in job.error
    assert "needs the AWS Neuron SDK" in job.error and "not importable" in job.error
    assert job.artifact is None


@pytest.mark.django_db
@pytest.mark.parametrize("options,words", [
    ({"tp_degree": 2}, "tp_degree 2 needs target neuron"),
    ({"quantization": "int8"}, "only available for target neuron"),
    ({"dtype": "float8"}, "dtype 'float8' is not supported"),
    ({"kernels": True}, "NKI kernels run only on Neuron"),
])
def test_bad_cpu_options_fail_with_an_actionable_error(register_version, tiny_llama, lc_home, options, words):
    from appliance.lifecycle.compile_runner import run_compile_job

    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama), target="cpu", **options)
    run_compile_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and words in job.error


@pytest.mark.django_db
def test_missing_checkpoint_fails_naming_the_directory(register_version, tmp_path, lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    job = CompileJob.objects.create(model_version=register_version("ghost", tmp_path / "nope"))
    run_compile_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and str(tmp_path / "nope") in job.error


@pytest.mark.django_db
def test_store_error_is_transient_and_requeues_the_job(register_version, tiny_llama, lc_home, settings):
    from appliance.lifecycle.compile_runner import TransientCompileError, run_compile_job

    blocker = lc_home / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    settings.ARTIFACT_STORE_URL = str(blocker / "store")
    job = CompileJob.objects.create(model_version=register_version("tiny", tiny_llama))
    with pytest.raises(TransientCompileError):
        run_compile_job(job.pk, task_id="t")
    job.refresh_from_db()
    assert job.status == "queued" and "transient storage error" in job.log
