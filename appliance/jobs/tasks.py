"""Celery tasks for batches (queue "batch", below live traffic) and async requests (queue "default").

Each task takes a row id, locks the row, and does nothing if the job already finished, so redelivery is safe;
a batch resumes from its pending items after a worker dies (acks_late + reject_on_worker_lost).
"""
from __future__ import annotations

import asyncio
import logging

from celery import shared_task
from django.db import connections, transaction
from django.utils import timezone

from . import services
from .executor import ASYNC_PRIORITY, BATCH_PRIORITY, execute
from appliance.tenancy.models import APIKey

from .models import AsyncRequest, Batch, BatchItem

log = logging.getLogger(__name__)
BATCH_CONCURRENCY = 8  # lines in flight at once: the engine batches them together


@shared_task(name="jobs.run_batch", queue="batch", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_batch(batch_id: str) -> None:
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.status in Batch.FINISHED:
            return
        if batch.status == Batch.Status.VALIDATING:
            try:
                services.expand_batch(batch)
            except (services.JobError, OSError) as exc:
                services.transition(batch.id, Batch.Status.FAILED, errors={
                    "object": "list", "data": [{"code": "invalid_input_file", "message": str(exc), "param": "input_file_id"}],
                })
                return
            batch = services.transition(batch.id, Batch.Status.IN_PROGRESS)
    api_key = APIKey.objects.select_related("tenant").filter(pk=batch.api_key_id).first()
    asyncio.run(_run_items(batch, api_key))
    batch.refresh_from_db()
    if batch.status == Batch.Status.CANCELLING:
        services.finalize_batch(batch)
        services.transition(batch.id, Batch.Status.CANCELLED)
        return
    services.transition(batch.id, Batch.Status.FINALIZING)
    services.finalize_batch(batch)
    services.transition(batch.id, Batch.Status.COMPLETED)


async def _run_items(batch: Batch, api_key: APIKey | None) -> None:
    from asgiref.sync import sync_to_async

    pending = await sync_to_async(list)(BatchItem.objects.filter(batch=batch, status=BatchItem.Status.PENDING))
    queue: asyncio.Queue = asyncio.Queue()
    for item in pending:
        queue.put_nowait(item)

    async def cancelled() -> bool:
        status = await sync_to_async(lambda: Batch.objects.values_list("status", flat=True).get(pk=batch.pk))()
        return status == Batch.Status.CANCELLING

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            if await cancelled():
                return
            try:
                status, body = await execute(api_key, batch.endpoint, item.request, BATCH_PRIORITY)
            except Exception as exc:  # one line's failure is recorded, the batch goes on
                log.exception("batch %s line %s failed", batch.id, item.line_no)
                status, body = 500, {"error": {"message": f"internal error: {exc.__class__.__name__}", "type": "server_error"}}
            await sync_to_async(services.record_item)(item, status, body)

    try:
        await asyncio.gather(*(worker() for _ in range(BATCH_CONCURRENCY)))
    finally:
        await sync_to_async(connections.close_all)()  # the executor thread's connection dies with this loop


@shared_task(name="jobs.run_async_request", queue="default", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_async_request(request_id: str) -> None:
    with transaction.atomic():
        req = AsyncRequest.objects.select_for_update().select_related("api_key__tenant").filter(pk=request_id).first()
        if req is None or req.status in AsyncRequest.FINISHED:
            return
        req.status, req.started_at = AsyncRequest.Status.IN_PROGRESS, timezone.now()
        req.save(update_fields=["status", "started_at"])
    try:
        status, body = asyncio.run(execute(req.api_key, req.endpoint, req.body, ASYNC_PRIORITY))
    except Exception as exc:
        log.exception("async request %s failed", request_id)
        status, body = 500, {"error": {"message": f"internal error: {exc.__class__.__name__}", "type": "server_error"}}
    ok = 200 <= status < 300
    AsyncRequest.objects.filter(pk=request_id).exclude(status=AsyncRequest.Status.CANCELLED).update(
        status=AsyncRequest.Status.COMPLETED if ok else AsyncRequest.Status.FAILED,
        status_code=status,
        response=body if ok else None,
        error=None if ok else body.get("error", body),
        finished_at=timezone.now(),
    )
