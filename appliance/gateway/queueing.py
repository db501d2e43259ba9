"""Waiting for a concurrency slot instead of a 429.

A tenant with ``max_queue_wait_s`` > 0 whose request is refused only for concurrency joins the tenant's FIFO queue
(in Redis, shared by every gateway process: quota_redis.py; in-process without Redis: quota_local.py). The admission
script admits a queued request only when it is first in line and every limit passes, and a new request never passes
one already waiting, so the order is fair across processes and admissions never exceed the limit (one atomic
script). The waiter asks again when a request of its tenant finishes in this process (woken at once) or, for a
release in another process, after a short poll (10 ms doubling to GATEWAY_QUEUE_POLL_S); past its tenant's bound it
leaves the queue and gets the 429. A client that disconnects while queued cancels its view, which takes its place
out of the queue at once.
"""
from __future__ import annotations

import asyncio
import time

from . import conf, metrics
from .quotas import Decision, Pick, Queue, QuotaBackend, Scope, Ticket

POLL_MIN_S = 0.01
_wakeups: dict[tuple[str, int], asyncio.Event] = {}


def released(ticket: Ticket | None, scope: Scope | None = None) -> None:
    """A slot (a finished request's scopes) or a place in line (`scope`) came free in this process: wake this
    process's waiters on it now."""
    for s in ticket.scopes if ticket is not None else [scope]:
        event = _wakeups.pop((s.kind, s.id), None)
        if event is not None:
            event.set()


async def _nap(scope: Scope, seconds: float) -> None:
    event = _wakeups.setdefault((scope.kind, scope.id), asyncio.Event())
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        pass


def refused(queue: Queue, waited_s: float) -> Decision:
    return Decision(False, reason="concurrency", scope=queue.scope.kind, retry_after_s=1,
                    headers={"retry-after": "1"}, waited_s=waited_s)


async def wait(backend: QuotaBackend, scopes: list[Scope], request_id: str, estimate: int, pick: Pick | None,
               queue: Queue) -> Decision:
    """Wait in `queue` (the request has joined it) until admitted, refused, or past the queue's bound (a 429);
    the Decision carries the time waited. Cancelled (the client went away), the request leaves the queue."""
    started = time.monotonic()
    deadline = started + queue.max_wait_s
    delay, outcome = POLL_MIN_S, "left"
    try:
        while True:
            await _nap(queue.scope, max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, conf.queue_poll_s())
            decision = await backend.admit(scopes, request_id, estimate, pick, queue)
            if not decision.queued:
                outcome = "admitted" if decision.admitted else "refused"
                decision.waited_s = time.monotonic() - started
                return decision
            if time.monotonic() >= deadline:
                outcome = "refused"
                await backend.leave(queue, request_id)
                return refused(queue, time.monotonic() - started)
    finally:
        if outcome == "left":
            await backend.leave(queue, request_id)
        metrics.QUEUE.labels(outcome).observe(time.monotonic() - started)
