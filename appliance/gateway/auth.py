"""API-key authentication for the OpenAI API, cached briefly in-process so the hot path does no DB work.

A key in steady use is re-read in the background before its entry expires (cache.py). A change to a key, its
tenant or the catalog clears the cache in every gateway process at once (invalidation.py); without Redis, a change
made in another process is seen within GATEWAY_AUTH_CACHE_S.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from . import conf
from .cache import RefreshingCache
from .db import run_db
from .errors import unauthorized
from .quotas import Limits, Queue, Scope


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key, its tenant, their quotas, and the model ids the key may use."""

    key_id: int
    tenant_id: int
    tenant_name: str
    key_limits: Limits
    tenant_limits: Limits
    allowed_models: frozenset[str]
    expires_at: float | None = None  # epoch seconds: a cached caller stops at its key's expiry, not the entry's
    guardrail: Any = None  # the tenant's guardrails.policy.Policy, if it has one
    max_queue_wait_s: float = 0.0  # the tenant's: wait this long for a concurrency slot before a 429

    @classmethod
    def of(cls, key) -> "Caller":
        """The caller for an APIKey row (tenant preloaded) that is valid now."""
        from appliance.guardrails.policy import tenant_policy
        from appliance.tenancy.services import allowed_model_names

        return cls(key.id, key.tenant_id, key.tenant.name, Limits.of(key), Limits.of(key.tenant),
                   frozenset(allowed_model_names(key)), None if key.expires_at is None else key.expires_at.timestamp(),
                   tenant_policy(key.tenant_id), key.tenant.max_queue_wait_s)

    def scopes(self) -> list[Scope]:
        return [Scope("tenant", self.tenant_id, self.tenant_limits), Scope("key", self.key_id, self.key_limits)]

    def queue(self) -> Queue | None:
        """The tenant's queue for a concurrency slot, if it has a wait bound (else a 429 at once)."""
        if self.max_queue_wait_s <= 0:
            return None
        return Queue(Scope("tenant", self.tenant_id, self.tenant_limits), self.max_queue_wait_s)


_cache: RefreshingCache[Caller | None] = RefreshingCache("api keys", conf.auth_cache_s)


def forget_all() -> None:
    _cache.clear()


def _load(plaintext: str) -> Caller | None:
    from appliance.tenancy.services import authenticate_key

    key = authenticate_key(plaintext)
    return None if key is None else Caller.of(key)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("You didn't provide an API key. Send it in the Authorization header as "
                           "'Authorization: Bearer YOUR_KEY'.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Malformed Authorization header: expected 'Bearer YOUR_KEY'.")
    return token.strip()


async def authenticate(authorization: str | None) -> Caller:
    """The caller for an Authorization header, or APIError 401 (missing, unknown, revoked or expired key)."""
    token = bearer_token(authorization)
    caller = await _cache.get(hashlib.sha256(token.encode()).digest(), lambda: run_db(_load, token))
    if caller is None or (caller.expires_at is not None and caller.expires_at <= time.time()):
        raise unauthorized("Incorrect API key provided. You can find your API keys in the appliance's console.")
    return caller
