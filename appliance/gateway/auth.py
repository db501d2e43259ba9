"""API-key authentication for the OpenAI API, cached briefly in-process so the hot path does no DB work.

A key in steady use is re-read in the background before its entry expires (cache.py); a revoked key stops working
within GATEWAY_AUTH_CACHE_S.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import conf
from .cache import RefreshingCache
from .db import run_db
from .errors import unauthorized
from .quotas import Limits, Scope


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key, its tenant, their quotas, and the model ids the key may use."""

    key_id: int
    tenant_id: int
    tenant_name: str
    key_limits: Limits
    tenant_limits: Limits
    allowed_models: frozenset[str]

    def scopes(self) -> list[Scope]:
        return [Scope("tenant", self.tenant_id, self.tenant_limits), Scope("key", self.key_id, self.key_limits)]


_cache: RefreshingCache[Caller | None] = RefreshingCache("api keys", conf.auth_cache_s)


def _load(plaintext: str) -> Caller | None:
    from appliance.tenancy.services import allowed_model_names, authenticate_key

    key = authenticate_key(plaintext)
    if key is None or not key.tenant.is_active:
        return None
    return Caller(key.id, key.tenant_id, key.tenant.name, Limits.of(key), Limits.of(key.tenant),
                  frozenset(allowed_model_names(key)))


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
    if caller is None:
        raise unauthorized("Incorrect API key provided. You can find your API keys in the appliance's console.")
    return caller
