"""Celery tasks of capacity. Each takes a row id and is safe to run twice."""
from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="capacity.run_benchmark")
def run_benchmark(self, run_id: int) -> str:
    """Run BenchmarkRun `run_id`; a finished run is left alone."""
    from .runner import run_benchmark as run

    return run(run_id, task_id=self.request.id or "")
