"""Celery tasks for batches (routed to queue "batch" by settings.CELERY_TASK_ROUTES) and async requests.

Each task takes a row id, locks the row, and does nothing if the job already finished, so redelivery is safe;
a batch resumes from its pending items after a worker dies (acks_late + reject_on_worker_lost). A batch runs in
slices of at most ``JOBS_BATCH_SLICE_S`` seconds: at the end of a slice the task queues itself again and returns,
so a long batch never holds a worker slot for hours (other jobs get their turn) nor outlives the broker's
visibility timeout (after which Redis would hand the same message to a second worker).
"""
from __future__ import annotations

import asyncio
import logging
import time

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from appliance.gateway.db import run_db
from appliance.gateway.usage import write_rows

from . import loop, services
from .executor import ASYNC_PRIORITY, BATCH_PRIORITY, execute, setting
from .models import AsyncRequest, Batch, BatchItem

log = logging.getLogger(__name__)
BATCH_CONCURRENCY = 8  # lines in flight at once: the engine batches them together


def slice_s() -> float:
    return setting("JOBS_BATCH_SLICE_S", 300)


def _start(batch_id: str) -> Batch | None:
    """Lock the batch; expand its input on first delivery. None when there is nothing (more) to run."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.status in Batch.FINISHED:
            return None
        if batch.status in (Batch.Status.VALIDATING, Batch.Status.CANCELLING):
            try:
                services.expand_batch(batch)  # once: a cancelled batch's lines are accounted for too
            except (services.APIError, OSError) as exc:
                if batch.status == Batch.Status.CANCELLING:
                    services.transition(batch.id, Batch.Status.CANCELLED)
                else:
                    services.transition(batch.id, Batch.Status.FAILED, errors={"object": "list", "data": [
                        {"code": "invalid_input_file", "message": str(exc), "param": "input_file_id", "line": None}]})
                return None
        if batch.status == Batch.Status.VALIDATING:
            batch = services.transition(batch.id, Batch.Status.IN_PROGRESS)
        return batch


@shared_task(name="jobs.run_batch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_batch(batch_id: str) -> None:
    batch = _start(batch_id)
    if batch is None:
        return
    more = loop.run(_run_items(batch, time.monotonic() + slice_s()))
    batch.refresh_from_db()
    if batch.status == Batch.Status.CANCELLING:
        services.fail_pending(batch.id, services.CANCELLED)
        batch.refresh_from_db()
        services.finalize_batch(batch)
        services.transition(batch.id, Batch.Status.CANCELLED)
        return
    if more:
        run_batch.delay(batch_id)
        return
    services.transition(batch.id, Batch.Status.FINALIZING)
    services.finalize_batch(batch)
    services.transition(batch.id, Batch.Status.COMPLETED)


def _pending(batch_id: str) -> list[BatchItem]:
    return list(BatchItem.objects.filter(batch_id=batch_id, status=BatchItem.Status.PENDING))


def _status(batch_id: str) -> str:
    return Batch.objects.values_list("status", flat=True).get(pk=batch_id)


def _out_of_budget(status: int, body: dict) -> bool:
    return status == 429 and (body.get("error") or {}).get("code") == "insufficient_quota"


async def _run_items(batch: Batch, deadline: float) -> bool:
    """Run the batch's pending lines, BATCH_CONCURRENCY at a time, until done, cancelled or the deadline.
    True when lines are left for another slice."""
    queue: asyncio.Queue[BatchItem] = asyncio.Queue()
    for item in await run_db(_pending, batch.id):
        queue.put_nowait(item)
    stop: list[str] = []  # why the workers stop early: "cancel", "budget", "slice"
    out_of_budget: dict = {}

    async def worker() -> None:
        while not stop and not queue.empty():
            if time.monotonic() > deadline:
                stop.append("slice")
                return
            if await run_db(_status, batch.id) == Batch.Status.CANCELLING:
                stop.append("cancel")
                return
            if stop or queue.empty():
                return
            item = queue.get_nowait()
            usage: list = []
            try:
                status, body = await execute(batch.api_key_id, batch.endpoint, item.request, BATCH_PRIORITY, "batch",
                                             usage)
            except Exception as exc:  # one line's failure is recorded, the batch goes on
                log.exception("batch %s line %s failed", batch.id, item.line_no)
                status, body = 500, {"error": {"message": f"internal error: {exc.__class__.__name__}",
                                               "type": "server_error", "code": None}}
            await run_db(services.record_item, item, status, body, usage)
            if _out_of_budget(status, body):
                out_of_budget.update(body["error"])
                stop.append("budget")

    await asyncio.gather(*(worker() for _ in range(BATCH_CONCURRENCY)))
    if out_of_budget:  # the lines not started fail with the same error (those in flight have finished)
        await run_db(services.fail_pending, batch.id, out_of_budget)
        return False
    return "slice" in stop and "cancel" not in stop


@shared_task(name="jobs.run_async_request", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_async_request(request_id: str) -> None:
    with transaction.atomic():
        req = AsyncRequest.objects.select_for_update().filter(pk=request_id).first()
        if req is None or req.status in AsyncRequest.FINISHED:
            return
        req.status, req.started_at = AsyncRequest.Status.IN_PROGRESS, timezone.now()
        req.save(update_fields=["status", "started_at"])
    usage: list = []
    try:
        status, body = loop.run(execute(req.api_key_id, req.endpoint, req.body, ASYNC_PRIORITY, "async", usage))
    except Exception as exc:
        log.exception("async request %s failed", request_id)
        status, body = 500, {"error": {"message": f"internal error: {exc.__class__.__name__}",
                                       "type": "server_error", "code": None}}
    ok = 200 <= status < 300
    with transaction.atomic():  # the outcome and its usage rows together: a worker killed before has neither
        AsyncRequest.objects.filter(pk=request_id).exclude(status=AsyncRequest.Status.CANCELLED).update(
            status=AsyncRequest.Status.COMPLETED if ok else AsyncRequest.Status.FAILED,
            status_code=status,
            response=body if ok else None,
            error=None if ok else body.get("error", body),
            finished_at=timezone.now(),
        )
        write_rows(usage)
