"""Celery tasks of the lifecycle. Each takes a row id (or nothing) and is safe to run twice."""
from __future__ import annotations

import os
import socket

from celery import shared_task

from .compile_runner import TransientCompileError, run_compile_job

COMPILE_MAX_RETRIES = 5


def retry_backoff_s(retries: int) -> int:
    return min(2 ** retries, 60)


def worker_identity(hostname: str | None) -> str:
    """The worker name and this process: two children of one worker (-c 2) are two claimants, so a message
    delivered twice is never run by both while one is alive."""
    return f"{hostname or socket.gethostname()} pid {os.getpid()}"


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=COMPILE_MAX_RETRIES)
def compile_model(self, job_id: int) -> str:
    """Run CompileJob `job_id`; a finished, superseded or live-elsewhere job is left alone."""
    try:
        return run_compile_job(job_id, task_id=self.request.id or "", worker=worker_identity(self.request.hostname))
    except TransientCompileError as exc:
        if self.request.retries >= COMPILE_MAX_RETRIES:
            from .compile_runner import finish
            from .models import CompileJob

            job = CompileJob.objects.get(pk=job_id)
            finish(job, CompileJob.Status.FAILED,
                   error=f"the artifact store kept failing after {self.request.retries + 1} tries: {exc}. "
                   "Check that ARTIFACT_STORE_URL is writable and has space, then queue the compile again",
                   line="giving up on transient errors")
            return "failed"
        raise self.retry(exc=exc, countdown=retry_backoff_s(self.request.retries))


@shared_task
def sweep_stale_compile_jobs() -> list:
    """Re-queue or fail running compile jobs whose worker stopped heartbeating (celery beat, every few seconds)."""
    from .compile_runner import sweep_stale_jobs

    return sweep_stale_jobs()


@shared_task
def autoscale_deployments() -> dict:
    """Scale deployments out/in/to zero (celery beat)."""
    from .autoscaler import autoscale_all

    return autoscale_all()


@shared_task
def place_deployments() -> dict:
    """Retry placement of waiting deployments (celery beat)."""
    from .placement import place_all

    return place_all()
