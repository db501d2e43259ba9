"""API-key authentication for the OpenAI API, cached briefly in-process so the hot path does no DB work."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from . import conf
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


_cache: dict[str, tuple[float, Caller | None]] = {}


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
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is None or hit[0] < now:
        caller = await run_db(_load, token)
        if len(_cache) > 10_000:
            _cache.clear()
        hit = (now + conf.auth_cache_s(), caller)
        _cache[digest] = hit
    if hit[1] is None:
        raise unauthorized("Incorrect API key provided. You can find your API keys in the appliance's console.")
    return hit[1]
