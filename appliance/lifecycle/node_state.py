"""A node's state over time (catalog.Node.state): ready -> lost when its agent falls silent for NODE_LOST_AFTER_S,
lost -> ready when it heartbeats again; ready <-> draining by an operator (`manage.py drain_node`, the admin API's
nodes/{id}/drain/ and undrain/). Placement places only on ready nodes; a draining node's replicas move off
(placement.place starts each elsewhere, then stops it); a lost node's replicas are stopped here and placed again.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from appliance.catalog.models import Node, Replica

from . import routing_state
from .conf import setting

log = logging.getLogger("appliance.nodes")
ACTIVE_STATES = (Replica.State.PENDING, Replica.State.STARTING, Replica.State.READY, Replica.State.FAILED,
                 Replica.State.DRAINING)


class NodeStateError(ValueError):
    """An operator asked for a transition the node cannot make (e.g. draining a lost node)."""


def lost_cutoff():
    return timezone.now() - timedelta(seconds=setting("NODE_LOST_AFTER_S"))


def heartbeat(node_id: int) -> bool:
    """Record the agent's heartbeat; a lost node comes back ready (True when it did). Its old replica rows were
    stopped when it was lost, so the cores they held are free and the agent stops their leftover processes."""
    now = timezone.now()
    Node.objects.filter(pk=node_id).update(last_heartbeat=now)
    back = Node.objects.filter(pk=node_id, state=Node.State.LOST).update(state=Node.State.READY, state_changed_at=now)
    if back:
        log.warning("node %s heartbeats again: ready", node_id)
    return bool(back)


def mark_lost_nodes() -> list[str]:
    """Mark nodes silent for NODE_LOST_AFTER_S lost and stop their replica rows (placement puts them elsewhere);
    returns the names newly lost. Idempotent, so every agent's pass and the beat task may run it."""
    now = timezone.now()
    silent = Node.objects.filter(last_heartbeat__lt=lost_cutoff()).exclude(state=Node.State.LOST)
    names = []
    for node in silent:
        if Node.objects.filter(pk=node.pk).exclude(state=Node.State.LOST).update(state=Node.State.LOST,
                                                                                   state_changed_at=now):
            names.append(node.name)
            log.warning("node %s is lost: no heartbeat since %s", node.name, node.last_heartbeat)
    stranded = Replica.objects.filter(node__state=Node.State.LOST, state__in=ACTIVE_STATES)
    for rid, node_name in list(stranded.values_list("pk", "node__name")):
        Replica.objects.filter(pk=rid).update(
            state=Replica.State.STOPPED, pid=None,
            last_error=f"node {node_name} stopped heartbeating (lost); replaced elsewhere",
        )
        routing_state.clear(rid)
    return names


def set_draining(name: str, draining: bool) -> Node:
    """Drain (True) or undrain (False) the node called `name`; raises Node.DoesNotExist or NodeStateError."""
    node = Node.objects.get(name=name)
    if node.state == Node.State.LOST:
        raise NodeStateError(f"node {name} is lost (no heartbeat); its replicas were already placed elsewhere")
    target = Node.State.DRAINING if draining else Node.State.READY
    if node.state != target:
        Node.objects.filter(pk=node.pk).filter(~Q(state=Node.State.LOST)).update(state=target,
                                                                                 state_changed_at=timezone.now())
        node.refresh_from_db()
    return node


def drain_progress(node: Node) -> dict[str, int]:
    """How far a drain has come: the node's replicas still running or starting (0: drained)."""
    left = Replica.objects.filter(node=node).exclude(state=Replica.State.STOPPED).count()
    return {"replicas_left": left}
