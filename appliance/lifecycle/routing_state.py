"""Replica routing state kept in Redis by the gateway, read here for autoscaling and pool eviction.

Keys (written by the gateway, appliance.gateway.keys):
  ``appliance:replica:{id}:outstanding``            integer, requests in flight on that replica;
  ``appliance:deployment:{id}:last_request_at``     epoch seconds of the deployment's latest request (the gateway
                                                    writes Deployment.last_request_at only every few seconds).
Without Redis (the laptop default) every replica reads as having nothing outstanding.
"""
from __future__ import annotations

from functools import lru_cache

OUTSTANDING_KEY = "appliance:replica:{id}:outstanding"
LAST_REQUEST_KEY = "appliance:deployment:{id}:last_request_at"


@lru_cache(maxsize=4)
def _client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def redis_client():
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", "")
    return _client(url) if url else None


def outstanding(replica_ids: list[int]) -> dict[int, int]:
    """Outstanding requests per replica id (0 for unknown keys, negative counters clamped to 0)."""
    client = redis_client()
    if client is None or not replica_ids:
        return {rid: 0 for rid in replica_ids}
    values = client.mget([OUTSTANDING_KEY.format(id=rid) for rid in replica_ids])
    return {rid: max(0, int(v or 0)) for rid, v in zip(replica_ids, values)}


def last_request_at(deployment_id: int):
    """The deployment's latest request time as the gateway recorded it in Redis (aware datetime), or None."""
    from datetime import datetime, timezone

    client = redis_client()
    if client is None:
        return None
    value = client.get(LAST_REQUEST_KEY.format(id=deployment_id))
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc) if value else None
    except ValueError:
        return None


def clear(replica_id: int) -> None:
    """Forget a stopped replica's counter so a later replica with a reused id starts at zero."""
    client = redis_client()
    if client is not None:
        client.delete(OUTSTANDING_KEY.format(id=replica_id))
