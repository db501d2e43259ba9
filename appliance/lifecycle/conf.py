"""Lifecycle tunables: a Django setting of the same name wins, then the environment variable APPLIANCE_<NAME>."""
from __future__ import annotations

import os

DEFAULTS: dict[str, float] = {
    "COMPILE_HEARTBEAT_S": 5.0,  # how often a running compile touches its row
    "COMPILE_STALE_AFTER_S": 30.0,  # a running job silent this long has lost its worker
    "COMPILE_MAX_ATTEMPTS": 3,  # worker losses before a job is failed instead of re-queued
    "AGENT_TICK_S": 1.0,  # node agent reconcile period
    "REPLICA_READY_TIMEOUT_S": 300.0,  # process start -> READY + warm-up, before the agent gives up
    "RESTART_BACKOFF_BASE_S": 1.0,  # crashed replica restart delay: base * 2**(restarts-1), capped
    "RESTART_BACKOFF_MAX_S": 60.0,
    "NODE_LOST_AFTER_S": 30.0,  # a node whose agent is silent this long is lost: its replicas are placed elsewhere
    "CPU_ENGINE_SLOTS": 0,  # engine slots on a CPU node; 0 = one per CPU core
}


def setting(name: str) -> float:
    from django.conf import settings

    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(f"APPLIANCE_{name}", DEFAULTS[name])
    return float(value)
