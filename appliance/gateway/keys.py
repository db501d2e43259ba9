"""Redis key names the gateway writes and other parts of the appliance read.

The autoscaler (lifecycle) reads ``replica_outstanding`` and ``deployment_last_request``; nothing else outside the
gateway should write them.
"""
from __future__ import annotations

PREFIX = "appliance"


def replica_outstanding(replica_id: int) -> str:
    """Integer: requests the gateway has in flight on this replica (all gateway processes together)."""
    return f"{PREFIX}:replica:{replica_id}:outstanding"


def deployment_last_request(deployment_id: int) -> str:
    """Float (epoch seconds): when a request for this deployment last arrived at the gateway."""
    return f"{PREFIX}:deployment:{deployment_id}:last_request_at"


def quota_requests(scope: str, scope_id: int) -> str:
    """Hash: epoch second -> requests admitted in that second (sliding one-minute window)."""
    return f"{PREFIX}:quota:{scope}:{scope_id}:rpm"


def quota_tokens(scope: str, scope_id: int) -> str:
    """Hash: epoch second -> tokens reserved/used by requests admitted in that second."""
    return f"{PREFIX}:quota:{scope}:{scope_id}:tpm"


def quota_inflight(scope: str, scope_id: int) -> str:
    """Sorted set: request id scored by the epoch second after which it no longer counts (TTL safety)."""
    return f"{PREFIX}:quota:{scope}:{scope_id}:inflight"


def quota_month(scope: str, scope_id: int, month: str) -> str:
    """Integer: tokens used (and reserved) in calendar month ``YYYYMM`` (UTC)."""
    return f"{PREFIX}:quota:{scope}:{scope_id}:month:{month}"


def quota_queue(scope: str, scope_id: int) -> str:
    """Sorted set: ids of requests waiting for a concurrency slot, scored by arrival (epoch ms): the FIFO queue."""
    return f"{PREFIX}:quota:{scope}:{scope_id}:queue"


def callers_changed() -> str:
    """Pub/sub channel: an API key, tenant or model changed; gateways forget the callers they have cached."""
    return f"{PREFIX}:callers-changed"
