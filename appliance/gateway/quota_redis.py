"""The Redis quota backend: every gateway process admits through the same Lua scripts, so limits hold across
processes (atomic per request). One script admits (and, given a Pick, chooses the replica); one settles."""
from __future__ import annotations

import time

from . import keys
from .queueing import released
from .quotas import (WINDOW_S, Decision, Pick, Queue, QuotaBackend, Scope, ScopeUsage, Ticket, decide,
                     inflight_ttl_s, month_of, month_tokens_used)


def _limit_args(scope: Scope) -> list[int]:
    lim = scope.limits
    return [-1 if v is None else int(v) for v in (lim.rpm, lim.tpm, lim.max_concurrency, lim.monthly_tokens)]


_ADMIT_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local now_ms = now * 1000 + math.floor(tonumber(clock[2]) / 1000)
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
-- The queue (the last key): a request refused only for concurrency, or that would pass others already waiting,
-- joins it (or keeps its place) instead of being admitted or refused. Tickets older than the wait bound (plus a
-- margin) belong to waiters that are gone (a gateway that died) and are dropped.
local qa = A + 4 * nscopes
local qwait = tonumber(ARGV[qa + 1] or '0')
if qwait > 0 then
  local qkey, qmax, qscope = KEYS[#KEYS], tonumber(ARGV[qa + 2]), tonumber(ARGV[qa + 3])
  redis.call('ZREMRANGEBYSCORE', qkey, '-inf', now_ms - qwait - 2000)
  local rank = redis.call('ZRANK', qkey, request_id)
  local ahead = rank or redis.call('ZCARD', qkey)
  if (out[1] == 0 and ahead > 0) or (out[1] > 0 and out[2] == 3) then
    if rank or ahead < qmax then
      if not rank then
        redis.call('ZADD', qkey, now_ms, request_id)
        redis.call('PEXPIRE', qkey, qwait + 5000)
      end
      out[1], out[2] = -2, ahead
      return out
    end
    out[1], out[2] = qscope, 3
  elseif rank then
    redis.call('ZREM', qkey, request_id)
  end
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

    async def admit(self, scopes: list[Scope], request_id: str, estimate: int, pick: Pick | None = None,
                    queue: Queue | None = None) -> Decision:
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
        if queue is not None:
            keys_.append(keys.quota_queue(queue.scope.kind, queue.scope.id))
            args += [max(1, int(queue.max_wait_s * 1000)), queue.max_len, scopes.index(queue.scope) + 1]
        out = [int(v) for v in await self._admit(keys=keys_, args=args)]
        if out[0] == -1:  # a monthly counter is missing (new month, new key, or Redis lost it): seed it from the DB
            for i, s in enumerate(scopes):
                if s.limits.monthly_tokens is not None:
                    used = await month_tokens_used(s)
                    await self.redis.set(keys_[4 * i + 3], used, nx=True, ex=40 * 86400)
            out = [int(v) for v in await self._admit(keys=keys_, args=args)]
        fail_scope, fail_kind, now, chosen = out[0], out[1], out[2], out[3]
        if fail_scope == -2:
            return Decision(False, queued=True)
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
        released(ticket)

    async def leave(self, queue: Queue, request_id: str) -> None:
        await self.redis.zrem(keys.quota_queue(queue.scope.kind, queue.scope.id), request_id)
        released(None, queue.scope)
