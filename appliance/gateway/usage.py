"""Settle a finished request: one UsageRecord row (its tokens are the ones the client received) and metrics.

Rows are queued and written in batches (one INSERT for everything that finished within GATEWAY_USAGE_BATCH_S, 50 ms)
by a background task per event loop, so no request waits for the database after its last token. When the web
server shuts down (ASGI lifespan, after its last request) the queue is written out; only a process killed outright
loses its last ~50 ms of rows. While the database is out of reach (restarting, failing over) the rows wait in memory
(up to GATEWAY_USAGE_BACKLOG_MAX of them) and the batch is tried again every few seconds; a retried batch skips the
rows its failed attempt may have committed (request ids are unique per request), so none is lost or doubled.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from . import conf, metrics
from .db import run_db_write
from .errors import is_outage

log = logging.getLogger(__name__)

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}
BATCH_MAX = 500
RETRY_MAX_S = 5.0


@dataclass
class Usage:
    tenant_id: int
    key_id: int | None
    model: str
    request_id: str
    endpoint: str
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    queue_s: float = 0.0


def write_rows(batch: list[Usage], retry: bool = False) -> None:
    """INSERT the rows (one statement); callers that must commit them with other rows call it in their
    transaction. `retry`: an earlier attempt failed and may have committed; rows already there are skipped."""
    from appliance.tenancy.models import UsageRecord

    if retry:
        there = set(UsageRecord.objects.filter(request_id__in=[u.request_id for u in batch])
                    .values_list("request_id", flat=True))
        batch = [u for u in batch if u.request_id not in there]
    UsageRecord.objects.bulk_create([UsageRecord(
        tenant_id=u.tenant_id, api_key_id=u.key_id, model_name=u.model[:100], request_id=u.request_id,
        endpoint=ENDPOINTS.get(u.endpoint, u.endpoint), prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens, latency_ms=u.latency_s * 1000,
        ttft_ms=None if u.ttft_s is None else u.ttft_s * 1000, queue_ms=u.queue_s * 1000, status_code=u.status) for u in batch])


class UsageWriter:
    """A queue of usage rows and the task that writes them in batches."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Usage] = asyncio.Queue()
        self.batch: list[Usage] = []  # taken from the queue, waiting for the rest of its batch
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        """Stop batching and write every row queued so far (the web server is shutting down). A batch whose
        INSERT had already started finishes on the writer thread, which the interpreter joins at exit."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        rows, self.batch = self.batch, []
        while not self.queue.empty():
            rows.append(self.queue.get_nowait())
        for start in range(0, len(rows), BATCH_MAX):
            await self._write(rows[start:start + BATCH_MAX], persist=False)

    async def _run(self) -> None:
        wait_s = conf.usage_batch_s()
        while True:
            self.batch.append(await self.queue.get())
            await asyncio.sleep(wait_s)
            while not self.queue.empty() and len(self.batch) < BATCH_MAX:
                self.batch.append(self.queue.get_nowait())
            batch, self.batch = self.batch, []
            await self._write(batch)

    async def _write(self, batch: list[Usage], persist: bool = True) -> None:
        """Write the batch; with `persist`, keep trying (backing off) while the database is out of reach, with the
        rows queued meanwhile waiting behind it."""
        delay, retry = 0.25, False
        while True:
            try:
                await run_db_write(write_rows, batch, retry)
                if retry:
                    log.warning("wrote %d usage records held while the database was out of reach", len(batch))
                return
            except Exception as exc:
                if not persist or not is_outage(exc):
                    log.exception("could not write %d usage records", len(batch))
                    return
                if not retry:
                    log.warning("database out of reach (%s); holding %d usage records", exc, len(batch))
                retry = True
                self._shed()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _shed(self) -> None:
        """Past the backlog bound, drop the oldest queued rows (logged) rather than the process's memory."""
        excess = self.queue.qsize() - conf.usage_backlog_max()
        if excess > 0:
            for _ in range(excess):
                self.queue.get_nowait()
            log.error("usage backlog over %d rows while the database is out of reach: dropped %d",
                      conf.usage_backlog_max(), excess)


_writers: dict[int, tuple[asyncio.AbstractEventLoop, UsageWriter]] = {}


def _writer() -> UsageWriter:
    loop = asyncio.get_running_loop()
    entry = _writers.get(id(loop))
    if entry is None or entry[0] is not loop or entry[1].task.done():
        entry = (loop, UsageWriter())
        _writers[id(loop)] = entry
    return entry[1]


async def drain() -> None:
    """Write the rows this event loop has queued (called at the web server's shutdown, after its last request)."""
    entry = _writers.pop(id(asyncio.get_running_loop()), None)
    if entry is not None and entry[0] is asyncio.get_running_loop():
        await entry[1].drain()


def observe(model: str, endpoint: str, status: int, latency_s: float, ttft_s: float | None = None,
            prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
    metrics.REQUESTS.labels(model, endpoint, str(status)).inc()
    metrics.LATENCY.labels(model, endpoint).observe(latency_s)
    if ttft_s is not None:
        metrics.TTFT.labels(model).observe(ttft_s)
    if prompt_tokens:
        metrics.TOKENS.labels(model, "prompt").inc(prompt_tokens)
    if completion_tokens:
        metrics.TOKENS.labels(model, "completion").inc(completion_tokens)


async def record(u: Usage, sink: list[Usage] | None = None) -> None:
    """Count the metrics and queue the usage row (written within ~50 ms); never raises. With a `sink`, the row goes
    there instead, for a caller that writes it in the same transaction as what the request produced (batch lines,
    async requests: a worker killed in between then leaves neither, and the request runs again)."""
    observe(u.model, u.endpoint, u.status, u.latency_s, u.ttft_s, u.prompt_tokens, u.completion_tokens)
    if sink is not None:
        sink.append(u)
    else:
        _writer().queue.put_nowait(u)
