"""Quota admission: requests per minute, tokens per minute, concurrency and a monthly token budget.

Every request is checked against its tenant's and its key's limits together, atomically across processes: one Lua
script in Redis checks every limit of every scope and, only if all pass, counts the request (one round trip). Tokens
are reserved from an estimate at admission and reconciled with the engine's exact counts at finish.

Windows slide over the last 60 seconds in one-second buckets. In-flight requests are a sorted set scored by an
expiry, so a gateway that dies mid-request cannot hold a concurrency slot for longer than the TTL.

With no Redis configured (the laptop demo), ``LocalQuotaBackend`` applies the same rules inside one process.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Callable

from django.conf import settings

from . import keys

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


def decide(scopes: list[Scope], usage: list[ScopeUsage], fail_scope: int, fail_kind: int, now: int,
           ticket: Ticket | None, estimate: int) -> Decision:
    """Turn the counters read at admission into a Decision with OpenAI's x-ratelimit-* headers."""
    headers: dict[str, str] = {}
    admitted = fail_scope == 0
    spent_req, spent_tok = (1, estimate) if admitted else (0, 0)
    req = [(s.limits.rpm - u.requests - spent_req, s.limits.rpm, _reset_s(u.requests_oldest, now))
           for s, u in zip(scopes, usage) if s.limits.rpm is not None]
    tok = [(s.limits.tpm - u.tokens - spent_tok, s.limits.tpm, _reset_s(u.tokens_oldest, now))
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


def _limit_args(scope: Scope) -> list[int]:
    lim = scope.limits
    return [-1 if v is None else int(v) for v in (lim.rpm, lim.tpm, lim.max_concurrency, lim.monthly_tokens)]


class QuotaBackend:
    """Interface: admit() before a request runs, finish() exactly once after it ends (any way it ends)."""

    remote = False  # admission costs a network round trip (worth overlapping with the engine's first token)

    async def admit(self, scopes: list[Scope], request_id: str, estimate: int, pick: Pick | None = None) -> Decision:
        """Admit or refuse; a backend that can also pick the replica in the same step does (Decision.replica_id)."""
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


_ADMIT_LUA = """
local now = tonumber(redis.call('TIME')[1])
local nscopes = tonumber(ARGV[1])
local request_id = ARGV[2]
local estimate = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local npick = tonumber(ARGV[6])
local outstanding_ttl = tonumber(ARGV[7])
local function sum_window(key)
  local data = redis.call('HGETALL', key)
  local total, oldest, stale = 0, -1, {}
  for j = 1, #data, 2 do
    local sec = tonumber(data[j])
    if sec <= now - window then
      stale[#stale + 1] = data[j]
    else
      total = total + tonumber(data[j + 1])
      if oldest < 0 or sec < oldest then oldest = sec end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return total, oldest
end
local out = {0, 0, now, 0}
local A = 7
for i = 1, nscopes do
  if tonumber(ARGV[A + 4 * (i - 1) + 4]) >= 0 and redis.call('EXISTS', KEYS[4 * (i - 1) + 4]) == 0 then
    out[1], out[2] = -1, i
    return out
  end
end
for i = 1, nscopes do
  local k, a = 4 * (i - 1), A + 4 * (i - 1)
  local rpm, tpm, conc, month = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local r_used, r_oldest = sum_window(KEYS[k + 1])
  local t_used, t_oldest = sum_window(KEYS[k + 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
  local inflight = redis.call('ZCARD', KEYS[k + 3])
  local m_used = tonumber(redis.call('GET', KEYS[k + 4]) or '0')
  if out[1] == 0 then
    local kind = 0
    if rpm >= 0 and r_used + 1 > rpm then kind = 1
    elseif tpm >= 0 and t_used + estimate > tpm then kind = 2
    elseif conc >= 0 and inflight + 1 > conc then kind = 3
    elseif month >= 0 and m_used + estimate > month then kind = 4 end
    if kind > 0 then out[1], out[2] = i, kind end
  end
  for _, v in ipairs({r_used, r_oldest, t_used, t_oldest, inflight, m_used}) do out[#out + 1] = v end
end
if out[1] == 0 then
  -- A scope's expiries are refreshed by its first request in each second, or when a key is new (an emptied
  -- in-flight set is deleted), not by every request: they only need to outlive the data, which the window, the
  -- in-flight TTL and the month all do by far.
  for i = 1, nscopes do
    local k, u = 4 * (i - 1), 4 + 6 * (i - 1)
    local first = redis.call('HINCRBY', KEYS[k + 1], now, 1) == 1
    redis.call('HINCRBY', KEYS[k + 2], now, estimate)
    redis.call('ZADD', KEYS[k + 3], now + ttl, request_id)
    redis.call('INCRBY', KEYS[k + 4], estimate)
    if first or out[u + 5] == 0 or out[u + 6] == 0 then
      redis.call('EXPIRE', KEYS[k + 1], window * 2)
      redis.call('EXPIRE', KEYS[k + 2], window * 2)
      redis.call('EXPIRE', KEYS[k + 3], ttl)
      redis.call('EXPIRE', KEYS[k + 4], 40 * 86400)
    end
  end
  if npick > 0 then
    local base = 4 * nscopes
    local best, best_v = 1, nil
    for j = 1, npick do
      local v = tonumber(redis.call('GET', KEYS[base + j]) or '0')
      if best_v == nil or v < best_v then best, best_v = j, v end
    end
    -- per replica and deployment, not per scope: refreshed on every request (another tenant's "first request this
    -- second" says nothing about this deployment)
    redis.call('INCR', KEYS[base + best])
    redis.call('EXPIRE', KEYS[base + best], outstanding_ttl)
    redis.call('SET', KEYS[base + npick + 1], now, 'EX', 86400)
    out[4] = best
  end
end
return out
"""

_FINISH_LUA = """
local nscopes = tonumber(ARGV[1])
local request_id = ARGV[2]
local admitted_at = ARGV[3]
local delta = tonumber(ARGV[4])
if ARGV[5] == '1' then
  local key = KEYS[3 * nscopes + 1]
  if redis.call('DECR', key) < 0 then redis.call('SET', key, 0) end
end
for i = 1, nscopes do
  local k = 3 * (i - 1)
  if delta ~= 0 then
    if redis.call('HEXISTS', KEYS[k + 1], admitted_at) == 1 then
      redis.call('HINCRBY', KEYS[k + 1], admitted_at, delta)
    end
    if redis.call('EXISTS', KEYS[k + 3]) == 1 then redis.call('INCRBY', KEYS[k + 3], delta) end
  end
  redis.call('ZREM', KEYS[k + 2], request_id)
end
return 1
"""


class RedisQuotaBackend(QuotaBackend):
    """`client`: redis-py's asyncio client; `scripts`: what runs the two Lua scripts on every request (the lean
    pipelined resp.ScriptClient in the gateway; redis-py's own script support if not given)."""

    remote = True

    def __init__(self, client, scripts=None) -> None:
        self.redis = client
        scripts = scripts or client
        self._admit = scripts.register_script(_ADMIT_LUA)
        self._finish = scripts.register_script(_FINISH_LUA)

    async def admit(self, scopes: list[Scope], request_id: str, estimate: int, pick: Pick | None = None) -> Decision:
        month = month_of(int(time.time()))
        keys_: list[str] = []
        npick = len(pick.replica_ids) if pick else 0
        args: list[int | str] = [len(scopes), request_id, estimate, inflight_ttl_s(), WINDOW_S, npick,
                                 inflight_ttl_s() * 3]
        for s in scopes:
            keys_ += [keys.quota_requests(s.kind, s.id), keys.quota_tokens(s.kind, s.id),
                      keys.quota_inflight(s.kind, s.id), keys.quota_month(s.kind, s.id, month)]
            args += _limit_args(s)
        if pick:
            keys_ += [keys.replica_outstanding(r) for r in pick.replica_ids]
            keys_.append(keys.deployment_last_request(pick.deployment_id))
        out = [int(v) for v in await self._admit(keys=keys_, args=args)]
        if out[0] == -1:  # a monthly counter is missing (new month, new key, or Redis lost it): seed it from the DB
            for i, s in enumerate(scopes):
                if s.limits.monthly_tokens is not None:
                    used = await month_tokens_used(s)
                    await self.redis.set(keys_[4 * i + 3], used, nx=True, ex=40 * 86400)
            out = [int(v) for v in await self._admit(keys=keys_, args=args)]
        fail_scope, fail_kind, now, chosen = out[0], out[1], out[2], out[3]
        usage = [ScopeUsage(*out[4 + 6 * i: 10 + 6 * i]) for i in range(len(scopes))]
        replica_id = pick.replica_ids[chosen - 1] if pick and chosen else None
        ticket = Ticket(request_id, scopes, estimate, now, month, replica_id) if fail_scope == 0 else None
        decision = decide(scopes, usage, fail_scope, fail_kind, now, ticket, estimate)
        decision.replica_id = replica_id
        return decision

    async def finish(self, ticket: Ticket, actual_tokens: int) -> None:
        keys_: list[str] = []
        for s in ticket.scopes:
            keys_ += [keys.quota_tokens(s.kind, s.id), keys.quota_inflight(s.kind, s.id),
                      keys.quota_month(s.kind, s.id, ticket.month)]
        if ticket.replica_id is not None:
            keys_.append(keys.replica_outstanding(ticket.replica_id))
        delta = int(actual_tokens) - ticket.estimate
        await self._finish(keys=keys_, args=[len(ticket.scopes), ticket.request_id, ticket.admitted_at, delta,
                                             "1" if ticket.replica_id is not None else "0"])


_backend: tuple[asyncio.AbstractEventLoop | None, QuotaBackend] | None = None


def get_quota_backend() -> QuotaBackend:
    """The process's backend: Redis when settings.REDIS_URL is set, else the in-process fallback."""
    global _backend
    loop = asyncio.get_running_loop()
    if _backend is None or (_backend[0] is not None and _backend[0] is not loop):
        if settings.REDIS_URL:
            from .redis_client import get_redis, get_script_client

            _backend = (loop, RedisQuotaBackend(get_redis(), get_script_client()))
        else:
            from .quota_local import LocalQuotaBackend

            _backend = (None, LocalQuotaBackend())
    return _backend[1]
