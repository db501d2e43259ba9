"""Quota admission: requests per minute, tokens per minute, concurrency and a monthly token budget.

Every request is checked against its tenant's and its key's limits together, atomically across processes: one Lua
script in Redis checks every limit of every scope and, only if all pass, counts the request (one round trip). Tokens
are reserved from an estimate at admission and reconciled with the engine's exact counts at finish.

Windows slide over the last 60 seconds in one-second buckets. In-flight requests are a sorted set scored by an
expiry, so a gateway that dies mid-request cannot hold a concurrency slot for longer than the TTL.

This module holds the rules (`decide`), the types and the choice of backend: ``RedisQuotaBackend``
(quota_redis.py, the scripts), or with no Redis configured (the laptop demo) ``LocalQuotaBackend`` (quota_local.py),
which applies the same rules inside one process.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings

WINDOW_S = 60
KINDS = {1: "requests", 2: "tokens", 3: "concurrency", 4: "monthly_tokens"}


@dataclass(frozen=True)
class Limits:
    """None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    monthly_tokens: int | None = None

    @classmethod
    def of(cls, obj) -> "Limits":
        return cls(obj.rpm, obj.tpm, obj.max_concurrency, obj.monthly_tokens)


@dataclass(frozen=True)
class Scope:
    kind: str  # "tenant" | "key"
    id: int
    limits: Limits


@dataclass
class ScopeUsage:
    requests: int  # in the window, before this request
    requests_oldest: int  # epoch second of the oldest counted bucket, -1 if none
    tokens: int
    tokens_oldest: int
    inflight: int
    month_tokens: int


@dataclass(frozen=True)
class Pick:
    """Replicas to choose among in the admission round trip: the one with the fewest outstanding requests is
    counted (keys.replica_outstanding) and the deployment's last-request time set."""

    replica_ids: list[int]
    deployment_id: int


@dataclass(frozen=True)
class Queue:
    """Wait for a concurrency slot instead of a 429: the request joins `scope`'s FIFO queue (at most `max_len`
    waiting) and is admitted only when it is first in line and every limit passes; queueing.py does the waiting."""

    scope: Scope
    max_wait_s: float
    max_len: int = 1000


@dataclass
class Ticket:
    """What finish() needs to release a request's slot and reconcile its tokens."""

    request_id: str
    scopes: list[Scope]
    estimate: int
    admitted_at: int  # epoch second (the bucket the estimate went into)
    month: str
    replica_id: int | None = None  # counted at admission; finish() releases it too


@dataclass
class Decision:
    admitted: bool
    ticket: Ticket | None = None
    replica_id: int | None = None  # the replica picked (and counted) at admission, if a Pick was given
    reason: str | None = None  # requests | tokens | concurrency | monthly_tokens
    scope: str | None = None  # tenant | key
    retry_after_s: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    ample: int = 0  # admitted with room for this many more such requests to be sure of admission (see Headroom)
    queued: bool = False  # neither admitted nor refused: waiting in the Queue (ask again to be admitted)
    waited_s: float = 0.0  # time spent in the queue before this decision

    @property
    def message(self) -> str:
        owner = "your organization" if self.scope == "tenant" else "this API key"
        return {
            "requests": f"Rate limit reached for requests per minute on {owner}. Retry after {self.retry_after_s}s.",
            "tokens": f"Rate limit reached for tokens per minute on {owner}. Retry after {self.retry_after_s}s.",
            "concurrency": f"Too many concurrent requests on {owner}. Retry when a request finishes.",
            "monthly_tokens": f"The monthly token budget of {owner} is used up.",
        }.get(self.reason or "", "Rate limit reached.")


_month_cache: tuple[int, int, str] = (0, -1, "")


def month_of(epoch_s: int) -> str:
    """``YYYYMM`` (UTC) of an epoch second; cached for the current day."""
    global _month_cache
    lo, hi, month = _month_cache
    if lo <= epoch_s < hi:
        return month
    day = epoch_s - epoch_s % 86400
    month = dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y%m")
    _month_cache = (day, day + 86400, month)
    return month


def seconds_to_next_month(epoch_s: int) -> int:
    now = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    nxt = dt.datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=dt.UTC)
    return max(1, int((nxt - now).total_seconds()))


def format_reset(seconds: int) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60}s"


def _reset_s(oldest: int, now: int) -> int:
    return 0 if oldest < 0 else max(1, oldest + WINDOW_S - now)


def _oldest(oldest: int, now: int, spent: int) -> int:
    return now if oldest < 0 and spent > 0 else oldest


def decide(scopes: list[Scope], usage: list[ScopeUsage], fail_scope: int, fail_kind: int, now: int,
           ticket: Ticket | None, estimate: int) -> Decision:
    """Turn the counters read at admission into a Decision with OpenAI's x-ratelimit-* headers."""
    headers: dict[str, str] = {}
    admitted = fail_scope == 0
    spent_req, spent_tok = (1, estimate) if admitted else (0, 0)
    # reset: when the oldest counted second leaves the window (room starts coming back); this request's own
    # second when it is the only one counted
    req = [(s.limits.rpm - u.requests - spent_req, s.limits.rpm,
            _reset_s(_oldest(u.requests_oldest, now, spent_req), now))
           for s, u in zip(scopes, usage) if s.limits.rpm is not None]
    tok = [(s.limits.tpm - u.tokens - spent_tok, s.limits.tpm, _reset_s(_oldest(u.tokens_oldest, now, spent_tok), now))
           for s, u in zip(scopes, usage) if s.limits.tpm is not None]
    if req:
        remaining, limit, reset = min(req)
        headers.update({"x-ratelimit-limit-requests": str(limit),
                        "x-ratelimit-remaining-requests": str(max(0, remaining)),
                        "x-ratelimit-reset-requests": format_reset(reset)})
    if tok:
        remaining, limit, reset = min(tok)
        headers.update({"x-ratelimit-limit-tokens": str(limit),
                        "x-ratelimit-remaining-tokens": str(max(0, remaining)),
                        "x-ratelimit-reset-tokens": format_reset(reset)})
    if admitted:
        return Decision(True, ticket=ticket, headers=headers, ample=_ample(scopes, usage, estimate))
    scope, u = scopes[fail_scope - 1], usage[fail_scope - 1]
    reason = KINDS[fail_kind]
    retry = {
        "requests": _reset_s(u.requests_oldest, now),
        "tokens": _reset_s(u.tokens_oldest, now),
        "concurrency": 1,
        "monthly_tokens": seconds_to_next_month(now),
    }[reason]
    retry = max(1, retry)
    headers["retry-after"] = str(retry)
    return Decision(False, reason=reason, scope=scope.kind, retry_after_s=retry, headers=headers)


SPECULATION_CAP = 32


def _ample(scopes: list[Scope], usage: list[ScopeUsage], estimate: int) -> int:
    """Half the number of further requests like this one that every limit still has room for (capped): so many
    may be dispatched before their own admission answers, and will be admitted unless other gateway processes
    spend more than the other half meanwhile."""
    room = SPECULATION_CAP
    for s, u in zip(scopes, usage):
        lim = s.limits
        for limit, used, cost in ((lim.rpm, u.requests + 1, 1), (lim.tpm, u.tokens + estimate, estimate),
                                  (lim.max_concurrency, u.inflight + 1, 1),
                                  (lim.monthly_tokens, u.month_tokens + estimate, estimate)):
            if limit is not None:
                room = min(room, (limit - used) // max(cost, 1) // 2)
    return max(room, 0)


class Headroom:
    """Per process: which keys were just admitted with ample room under every limit, and for how many more
    requests. A request of such a key is dispatched to the engine while its admission is still in flight (the
    Redis round trip leaves the time to first token); if admission refuses it after all, the engine request is
    aborted before it returns anything. A key near any limit, or not admitted in the last GATEWAY_HEADROOM_TTL_S,
    waits for admission as usual, so a tenant at its quota never gets work started on an engine."""

    def __init__(self, ttl_s: Callable[[], float] | None = None) -> None:
        from . import conf

        self.ttl_s = ttl_s or conf.headroom_ttl_s
        self._room: dict[int, tuple[float, int]] = {}

    def take(self, key_id: int) -> bool:
        entry = self._room.get(key_id)
        if entry is None or entry[1] <= 0 or entry[0] < time.monotonic():
            return False
        self._room[key_id] = (entry[0], entry[1] - 1)
        return True

    def note(self, key_id: int, decision: Decision) -> None:
        ttl = self.ttl_s()
        if decision.admitted and decision.ample > 0 and ttl > 0:
            if len(self._room) > 10_000:
                self._room.clear()
            self._room[key_id] = (time.monotonic() + ttl, decision.ample)
        else:
            self._room.pop(key_id, None)


class QuotaBackend:
    """Interface: admit() before a request runs, finish() exactly once after it ends (any way it ends)."""

    remote = False  # admission costs a network round trip (worth overlapping with the engine's first token)

    async def admit(self, scopes: list[Scope], request_id: str, estimate: int, pick: Pick | None = None,
                    queue: Queue | None = None) -> Decision:
        """Admit or refuse; a backend that can also pick the replica in the same step does (Decision.replica_id).
        With a `queue`, a request refused only for concurrency (or behind others waiting) is queued instead."""
        raise NotImplementedError

    async def leave(self, queue: Queue, request_id: str) -> None:
        """Take a waiting request out of its queue (it gave up, or its client went away)."""
        raise NotImplementedError

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None:
        raise NotImplementedError


def _month_tokens_used(scope: Scope) -> int:
    from appliance.tenancy.usage import month_tokens

    if scope.kind == "tenant":
        return month_tokens(scope.id)
    from appliance.tenancy.models import APIKey

    tenant_id = APIKey.objects.filter(id=scope.id).values_list("tenant_id", flat=True).first()
    return 0 if tenant_id is None else month_tokens(tenant_id, api_key=scope.id)


async def month_tokens_used(scope: Scope) -> int:
    """Tokens the scope's usage rows say it used this month: the starting point of the monthly counter."""
    from .db import run_db

    return int(await run_db(_month_tokens_used, scope))


def inflight_ttl_s() -> int:
    from .conf import inflight_ttl_s as ttl

    return ttl()


_backend: tuple[asyncio.AbstractEventLoop | None, QuotaBackend] | None = None


def get_quota_backend() -> QuotaBackend:
    """The process's backend: Redis when settings.REDIS_URL is set, else the in-process fallback."""
    global _backend
    loop = asyncio.get_running_loop()
    if _backend is None or (_backend[0] is not None and _backend[0] is not loop):
        if settings.REDIS_URL:
            from .quota_redis import RedisQuotaBackend
            from .redis_client import get_redis, get_script_client

            _backend = (loop, RedisQuotaBackend(get_redis(), get_script_client()))
        else:
            from .quota_local import LocalQuotaBackend

            _backend = (None, LocalQuotaBackend())
    return _backend[1]
