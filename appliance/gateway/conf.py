"""Gateway settings: a Django setting of the same name wins, else the environment, else the default.

Read once per process (they are on the hot path).
"""
from __future__ import annotations

import functools
import os

from django.conf import settings


@functools.cache
def _get(name: str, default: float) -> float:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, default)
    return float(value)


def auth_cache_s() -> float:
    """How long an authenticated key (and its tenant, quotas, allowed models) is reused in-process."""
    return _get("GATEWAY_AUTH_CACHE_S", 5)


def route_cache_s() -> float:
    """How long a deployment's READY replicas are reused in-process before asking the database again."""
    return _get("GATEWAY_ROUTE_CACHE_S", 2)


def headroom_ttl_s() -> float:
    """How long a key's last admission with ample room lets its next requests be dispatched before their own
    admission answers (quotas.Headroom); 0 turns early dispatch off."""
    return _get("GATEWAY_HEADROOM_TTL_S", 1)


def queue_poll_s() -> float:
    """The longest a queued request waits before asking again for a slot a request in another gateway process may
    have freed (releases in its own process wake it at once)."""
    return _get("GATEWAY_QUEUE_POLL_S", 0.05)


def usage_batch_s() -> float:
    """How long a finished request's usage row waits for others to share its INSERT."""
    return _get("GATEWAY_USAGE_BATCH_S", 0.05)


def usage_backlog_max() -> int:
    """How many usage rows wait in memory while the database is out of reach before the oldest are dropped."""
    return int(_get("GATEWAY_USAGE_BACKLOG_MAX", 100_000))


def route_stale_s() -> float:
    """How long past GATEWAY_ROUTE_CACHE_S a cached route may still serve one request while it is re-read."""
    return _get("GATEWAY_ROUTE_STALE_S", 30)


def cold_start_timeout_s() -> float:
    """How long a request waits for a scaled-to-zero deployment's replica before a 503."""
    return _get("GATEWAY_COLD_START_TIMEOUT_S", 120)


def engine_sessions() -> bool:
    """Whether requests to a replica share one multiplexed session (POST /session) rather than one /generate
    stream each."""
    return bool(_get("GATEWAY_ENGINE_SESSIONS", 1))


def engine_connect_timeout_s() -> float:
    return _get("GATEWAY_ENGINE_CONNECT_TIMEOUT_S", 5)


def engine_read_timeout_s() -> float:
    """Longest silence from an engine mid-request before the gateway gives up on it."""
    return _get("GATEWAY_ENGINE_READ_TIMEOUT_S", 300)


def last_request_write_s() -> float:
    """Deployment.last_request_at is written at most this often per deployment per process."""
    return _get("GATEWAY_LAST_REQUEST_WRITE_S", 10)


def inflight_ttl_s() -> int:
    """A concurrency slot is freed after this long even if its request never reported back."""
    return int(_get("GATEWAY_INFLIGHT_TTL_S", 900))


def default_max_tokens() -> int:
    """max_tokens of a chat request that sets none (the engine also stops at the model's context length)."""
    return int(_get("GATEWAY_DEFAULT_MAX_TOKENS", 256))


def max_n() -> int:
    return int(_get("GATEWAY_MAX_N", 16))
