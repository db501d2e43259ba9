"""The in-process quota backend for the Redis-less laptop demo: the same rules as the Lua script, one process."""
from __future__ import annotations

import threading
import time
from collections import defaultdict

from .queueing import released
from .quotas import (WINDOW_S, Decision, Pick, Queue, QuotaBackend, Scope, ScopeUsage, Ticket, decide,
                     inflight_ttl_s, month_of, month_tokens_used)


class LocalQuotaBackend(QuotaBackend):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple, dict[int, int]] = defaultdict(dict)
        self._tokens: dict[tuple, dict[int, int]] = defaultdict(dict)
        self._inflight: dict[tuple, dict[str, float]] = defaultdict(dict)
        self._month: dict[tuple, int] = {}
        self._queues: dict[tuple, dict[str, float]] = defaultdict(dict)  # request id -> joined at, in arrival order

    @staticmethod
    def _window(buckets: dict[int, int], now: int) -> tuple[int, int]:
        for sec in [s for s in buckets if s <= now - WINDOW_S]:
            del buckets[sec]
        return sum(buckets.values()), min(buckets, default=-1)

    async def admit(self, scopes: list[Scope], request_id: str, estimate: int, pick: Pick | None = None,
                    queue: Queue | None = None) -> Decision:
        now = int(time.time())
        month = month_of(now)
        for s in scopes:
            if s.limits.monthly_tokens is not None and (s.kind, s.id, month) not in self._month:
                used = await month_tokens_used(s)
                with self._lock:
                    self._month.setdefault((s.kind, s.id, month), used)
        with self._lock:
            usage: list[ScopeUsage] = []
            fail_scope = fail_kind = 0
            for i, s in enumerate(scopes, start=1):
                key = (s.kind, s.id)
                r_used, r_oldest = self._window(self._requests[key], now)
                t_used, t_oldest = self._window(self._tokens[key], now)
                inflight = self._inflight[key]
                for rid in [r for r, exp in inflight.items() if exp <= now]:
                    del inflight[rid]
                m_used = self._month.get(key + (month,), 0)
                lim = s.limits
                if not fail_scope:
                    checks = [lim.rpm is not None and r_used + 1 > lim.rpm,
                              lim.tpm is not None and t_used + estimate > lim.tpm,
                              lim.max_concurrency is not None and len(inflight) + 1 > lim.max_concurrency,
                              lim.monthly_tokens is not None and m_used + estimate > lim.monthly_tokens]
                    if any(checks):
                        fail_scope, fail_kind = i, checks.index(True) + 1
                usage.append(ScopeUsage(r_used, r_oldest, t_used, t_oldest, len(inflight), m_used))
            if queue is not None:
                line = self._queues[(queue.scope.kind, queue.scope.id)]
                clock = time.monotonic()
                for rid in [r for r, joined in line.items() if joined < clock - queue.max_wait_s - 2]:
                    del line[rid]
                rank = list(line).index(request_id) if request_id in line else None
                ahead = len(line) if rank is None else rank
                if (not fail_scope and ahead > 0) or (fail_scope and fail_kind == 3):
                    if rank is not None or ahead < queue.max_len:
                        line.setdefault(request_id, clock)
                        return Decision(False, queued=True)
                    fail_scope, fail_kind = scopes.index(queue.scope) + 1, 3
                elif rank is not None:
                    del line[request_id]
            ticket = None
            if not fail_scope:
                for s in scopes:
                    key = (s.kind, s.id)
                    self._requests[key][now] = self._requests[key].get(now, 0) + 1
                    self._tokens[key][now] = self._tokens[key].get(now, 0) + estimate
                    self._inflight[key][request_id] = now + inflight_ttl_s()
                    self._month[key + (month,)] = self._month.get(key + (month,), 0) + estimate
                ticket = Ticket(request_id, scopes, estimate, now, month)
        return decide(scopes, usage, fail_scope, fail_kind, now, ticket, estimate)

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None:
        delta = int(actual_tokens) - ticket.estimate
        with self._lock:
            for s in ticket.scopes:
                key = (s.kind, s.id)
                buckets = self._tokens[key]
                if ticket.admitted_at in buckets:
                    buckets[ticket.admitted_at] += delta
                self._month[key + (ticket.month,)] = self._month.get(key + (ticket.month,), 0) + delta
                self._inflight[key].pop(ticket.request_id, None)
        released(ticket)

    async def leave(self, queue: Queue, request_id: str) -> None:
        with self._lock:
            self._queues[(queue.scope.kind, queue.scope.id)].pop(request_id, None)
        released(None, queue.scope)
