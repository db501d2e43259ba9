"""Autoscaling: out on outstanding requests per replica over the target, in to min when idle, to zero after the
idle timeout when min_replicas is 0. Decisions are plain functions over plain numbers; `autoscale_all` applies them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from appliance.catalog.models import Deployment, Replica

from . import placement, routing_state


@dataclass
class ScaleInputs:
    desired: int
    min_replicas: int
    max_replicas: int
    outstanding: int
    target_per_replica: int
    idle_for_s: float | None  # seconds since the last request (or the last replica became ready); None = never
    idle_timeout_s: float
    starting: bool = False  # a replica is still starting: a request may be waiting on its cold start


def decide(x: ScaleInputs) -> int:
    """The new desired replica count."""
    needed = math.ceil(x.outstanding / max(x.target_per_replica, 1))
    if needed > x.desired:
        return min(max(needed, x.min_replicas), x.max_replicas)
    idle = not x.starting and x.outstanding == 0 and (x.idle_for_s is None or x.idle_for_s >= x.idle_timeout_s)
    if idle:
        return x.min_replicas
    return min(max(x.desired, x.min_replicas), x.max_replicas)


def inputs_for(dep: Deployment, now: datetime) -> ScaleInputs:
    replicas = list(dep.replicas.filter(state__in=placement.ACTIVE_STATES).values_list("pk", "state", "ready_at"))
    outstanding = sum(routing_state.outstanding([pk for pk, _, _ in replicas]).values())
    # Replicas not yet placed or not yet ready: a request may be waiting on their cold start.
    starting = any(state != Replica.State.READY for _, state, _ in replicas) or len(replicas) < min(
        dep.desired_replicas, dep.max_replicas)
    last_request = routing_state.last_request_at(dep.pk)
    last_active = max([t for t in [dep.last_request_at, last_request, *(r for _, _, r in replicas)] if t], default=None)
    idle_for = (now - last_active).total_seconds() if last_active else None
    min_replicas = 0 if dep.mode == Deployment.Mode.SHARED else dep.min_replicas
    max_replicas = 1 if dep.mode == Deployment.Mode.SHARED else dep.max_replicas
    return ScaleInputs(dep.desired_replicas, min_replicas, max_replicas, outstanding,
                       dep.target_outstanding_per_replica, idle_for, dep.idle_timeout_s, starting)


def autoscale(dep: Deployment, now: datetime | None = None) -> int | None:
    """Apply one decision to `dep`; returns the new desired count when it changed."""
    x = inputs_for(dep, now or timezone.now())
    new = decide(x)
    if new == dep.desired_replicas:
        return None
    # Conditional update: a concurrent wake-up by the gateway (desired 0 -> 1) must not be undone.
    changed = Deployment.objects.filter(pk=dep.pk, desired_replicas=dep.desired_replicas)
    if new < dep.desired_replicas and dep.last_request_at:
        changed = changed.filter(Q(last_request_at__lte=dep.last_request_at) | Q(last_request_at=None))
    if not changed.update(desired_replicas=new):
        return None
    placement.place(dep.pk)
    return new


def autoscale_all() -> dict[str, int]:
    """One autoscaling pass over active deployments (celery beat and the node agent call it)."""
    changes = {}
    now = timezone.now()
    for dep in Deployment.objects.filter(is_active=True).select_related("pool"):
        new = autoscale(dep, now)
        if new is not None:
            changes[dep.name] = new
    return changes


def ready_replicas(dep: Deployment) -> int:
    return dep.replicas.filter(state=Replica.State.READY).count()
