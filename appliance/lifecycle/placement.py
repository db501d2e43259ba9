"""Placement: turn each deployment's desired replica count into Replica rows bound to a node's free cores.

Dedicated and per-model replicas are spread over ready nodes: a node not yet holding a replica of the same deployment
first, then the node with the most free cores, each replica on the lowest contiguous run of free cores large enough.
Shared-pool replicas use their pool's cores; a full pool evicts its least recently used idle model. When nothing
fits the deployment's status says so plainly and the next pass retries. Replicas on a draining node are started
again elsewhere and stopped once their replacements are ready; those on a lost node were stopped (node_state.py)
and are placed again like new ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Pool, Replica

from . import node_state, routing_state

ACTIVE_STATES = (Replica.State.PENDING, Replica.State.STARTING, Replica.State.READY, Replica.State.FAILED)


@dataclass
class Slot:
    node: Node
    cores: list[int]


def live_nodes(device: str) -> list[Node]:
    """Ready nodes of this device whose agent heartbeated within NODE_LOST_AFTER_S (draining and lost ones never)."""
    return list(Node.objects.filter(device=device, state=Node.State.READY, last_heartbeat__gte=node_state.lost_cutoff())
                .order_by("name"))


def pool_cores(pool: Pool) -> list[int]:
    """A pool holds a fixed run of its node's cores: pools on a node take consecutive runs from core 0, by id."""
    start = 0
    for other in Pool.objects.filter(node=pool.node).order_by("pk"):
        if other.pk == pool.pk:
            return list(range(start, min(start + pool.cores, pool.node.cores)))
        start += other.cores
    return []


def used_cores(node: Node) -> set[int]:
    used: set[int] = set()
    for pool in Pool.objects.filter(node=node):
        used.update(pool_cores(pool))
    active = Replica.objects.filter(node=node, state__in=ACTIVE_STATES).exclude(deployment__mode=Deployment.Mode.SHARED)
    for cores in active.values_list("cores", flat=True):
        used.update(cores or [])
    return used


def free_run(free: list[int], size: int) -> list[int] | None:
    """The lowest run of `size` consecutive free cores (Neuron needs a contiguous NEURON_RT_VISIBLE_CORES range)."""
    run: list[int] = []
    for core in free:
        run = run + [core] if run and core == run[-1] + 1 else [core]
        if len(run) == size:
            return run
    return None


def find_slot(device: str, size: int, deployment_id: int | None = None) -> Slot | None:
    """Spread over live nodes that hold `size` contiguous free cores: one not yet holding a replica of
    `deployment_id` first, then the most free cores (then the name, so the choice is stable)."""
    best: tuple[tuple, Slot] | None = None
    for node in live_nodes(device):
        free = sorted(set(range(node.cores)) - used_cores(node))
        run = free_run(free, size)
        if run is None:
            continue
        holds = deployment_id is not None and Replica.objects.filter(
            node=node, deployment_id=deployment_id, state__in=ACTIVE_STATES).exists()
        key = (holds, -len(free), node.name)
        if best is None or key < best[0]:
            best = (key, Slot(node, run))
    return best[1] if best else None


def capacity_summary(device: str) -> str:
    parts = [f"{n.name}: {n.cores - len(used_cores(n) & set(range(n.cores)))} of {n.cores} free"
             for n in live_nodes(device)]
    return "; ".join(parts)


def target_replicas(dep: Deployment) -> int:
    if not dep.is_active or dep.status == Deployment.Status.STOPPED:
        return 0
    want = min(dep.desired_replicas, dep.max_replicas)
    if dep.mode == Deployment.Mode.SHARED:
        return min(want, 1)
    return max(want, dep.min_replicas)


def set_status(dep: Deployment, status: str, message: str) -> None:
    if dep.status != status or dep.status_message != message:
        Deployment.objects.filter(pk=dep.pk).update(status=status, status_message=message, updated_at=timezone.now())
        dep.status, dep.status_message = status, message


def _next_index(dep: Deployment) -> int:
    taken = set(dep.replicas.filter(state__in=ACTIVE_STATES).values_list("index", flat=True))
    return next(i for i in range(len(taken) + 1) if i not in taken)


def place(dep_id: int) -> str:
    """Reconcile one deployment's Replica rows with its target count; returns its status message."""
    with transaction.atomic():
        shared = Deployment.objects.filter(pk=dep_id, mode=Deployment.Mode.SHARED)
        pool_id = shared.values_list("pool_id", flat=True).first()
        if pool_id:  # lock order: pool, then deployment, so concurrent evictions in one pool cannot deadlock
            list(Pool.objects.select_for_update().filter(pk=pool_id))
        dep = Deployment.objects.select_for_update(of=("self",)).select_related("pool__node").filter(pk=dep_id).first()
        if dep is None:
            return "gone"
        blocked = _blocked_by_compile(dep)
        if blocked:
            return blocked
        want = target_replicas(dep)
        active = list(dep.replicas.filter(state__in=ACTIVE_STATES).select_related("node").order_by("index"))
        leaving = [r for r in active if r.node.state != Node.State.READY]  # on a draining node: moving off
        active = [r for r in active if r.node.state == Node.State.READY]
        if len(active) > want:
            order = sorted(active, key=lambda r: (r.state == Replica.State.READY, r.index))
            for replica in order[: len(active) - want]:
                Replica.objects.filter(pk=replica.pk).update(state=Replica.State.DRAINING)
            active = [r for r in active if r not in order[: len(active) - want]]
        placed_all = True
        for _ in range(want - len(active)):
            if dep.mode == Deployment.Mode.SHARED:
                slot = _shared_slot(dep)
            else:
                slot = find_slot(dep.device, dep.cores_per_replica, dep.pk)
            if slot is None:
                if dep.mode != Deployment.Mode.SHARED and not live_nodes(dep.device):
                    set_status(dep, Deployment.Status.WAITING, (
                        f"waiting for a {dep.device} node: no node agent has reported in lately "
                        "(start one with `python manage.py run_agent`, or run `python manage.py serve`)"
                    ))
                elif dep.mode != Deployment.Mode.SHARED:
                    set_status(dep, Deployment.Status.WAITING, (
                        f"waiting for capacity: {len(active)} of {want} replicas placed; each needs "
                        f"{dep.cores_per_replica} free {dep.device} core(s) in a row ({capacity_summary(dep.device)})"
                    ))
                placed_all = False
                break
            active.append(Replica.objects.create(
                deployment=dep, node=slot.node, index=_next_index(dep), state=Replica.State.PENDING,
                cores=slot.cores, host=slot.node.address,
            ))
        _retire_leaving(dep, leaving, active, want)
        if not placed_all:
            return dep.status_message
        if want == 0 and not dep.is_active:
            set_status(dep, Deployment.Status.STOPPED, "stopped")
        elif want == 0:
            if dep.status != Deployment.Status.SCALED_TO_ZERO:  # an eviction's message stays
                set_status(dep, Deployment.Status.SCALED_TO_ZERO, "scaled to zero: the next request starts a replica")
        elif any(r.state == Replica.State.READY for r in active):
            ready = sum(r.state == Replica.State.READY for r in active)
            set_status(dep, Deployment.Status.RUNNING, f"{ready} of {want} replicas ready")
        else:
            failure = next((r for r in active if r.state == Replica.State.FAILED and r.last_error), None)
            note = f"; replica #{failure.index} failed {failure.restart_count} time(s): {failure.last_error[:300]}" \
                if failure else ""
            set_status(dep, Deployment.Status.PENDING, f"starting {want} replica(s){note}")
        return dep.status_message


def _retire_leaving(dep: Deployment, leaving: list[Replica], active: list[Replica], want: int) -> None:
    """Stop replicas on draining nodes once ready replicas elsewhere stand in for them (start elsewhere, then
    stop): as many as the ready ones beyond `want` cover, those not yet ready first. A shared pool is bound to its
    node, so its replicas there stop at once."""
    if not leaving:
        return
    ready = sum(r.state == Replica.State.READY for r in active)
    spare = len(leaving) if dep.mode == Deployment.Mode.SHARED or want == 0 else ready + len(leaving) - want
    order = sorted(leaving, key=lambda r: (r.state == Replica.State.READY, r.index))
    for replica in order[: max(0, min(spare, len(leaving)))]:
        Replica.objects.filter(pk=replica.pk).update(state=Replica.State.DRAINING,
                                                     last_error=f"moved off draining node {replica.node.name}")


def _blocked_by_compile(dep: Deployment) -> str:
    if dep.artifact_id is not None:
        return ""
    from .models import CompileJob

    job = CompileJob.objects.filter(model_version=dep.model_version, target=dep.device).order_by("-created_at").first()
    if job is None or job.status == CompileJob.Status.SUCCEEDED or job.status == CompileJob.Status.CANCELLED:
        return ""
    if job.status == CompileJob.Status.FAILED:
        set_status(dep, Deployment.Status.FAILED, f"compile job #{job.pk} failed: {job.error}")
    else:
        progress = f"{job.stage} {job.percent}%" if job.status == CompileJob.Status.RUNNING else job.status
        set_status(dep, Deployment.Status.PENDING, f"waiting for compile job #{job.pk} ({progress})")
    return dep.status_message


def _shared_slot(dep: Deployment) -> Slot | None:
    pool = Pool.objects.select_for_update(of=("self",)).select_related("node").filter(pk=dep.pool_id).first()
    if pool is None:
        set_status(dep, Deployment.Status.FAILED, "shared mode needs a pool: deploy with --pool NAME")
        return None
    if pool.node.state != Node.State.READY:
        set_status(dep, Deployment.Status.WAITING, f"pool {pool.name} is on node {pool.node.name}, which is "
                   f"{pool.node.state}: a pool's cores belong to its node; undrain it or move the pool")
        return None
    loaded = list(
        Deployment.objects.filter(pool=pool, replicas__state__in=ACTIVE_STATES).exclude(pk=dep.pk).distinct()
    )
    budget = pool.memory_bytes
    while len(loaded) >= pool.max_loaded_models or (
        budget and sum(model_bytes(d) for d in loaded) + model_bytes(dep) > budget
    ):
        victim = _least_recently_used_idle(loaded)
        if victim is None:
            set_status(dep, Deployment.Status.WAITING, (
                f"pool {pool.name} is full ({len(loaded)} of {pool.max_loaded_models} models loaded, all busy); "
                "waiting for one to go idle"
            ))
            return None
        _evict(victim, pool, dep)
        loaded.remove(victim)
    return Slot(pool.node, pool_cores(pool))


def _least_recently_used_idle(loaded: list[Deployment]) -> Deployment | None:
    idle = []
    for d in loaded:
        replicas = list(d.replicas.filter(state__in=ACTIVE_STATES))
        if any(r.state != Replica.State.READY for r in replicas):
            continue
        if any(routing_state.outstanding([r.pk for r in replicas]).values()):
            continue
        idle.append(d)
    never = timezone.now() - timedelta(days=36500)
    return min(idle, key=lambda d: d.last_request_at or never, default=None)


def _evict(victim: Deployment, pool: Pool, incoming: Deployment) -> None:
    Deployment.objects.filter(pk=victim.pk).update(
        desired_replicas=0, status=Deployment.Status.SCALED_TO_ZERO,
        status_message=f"evicted from pool {pool.name} (least recently used) to load {incoming.name}; "
        "the next request loads it again",
    )
    victim.replicas.filter(state__in=ACTIVE_STATES).update(state=Replica.State.DRAINING)
    Pool.objects.filter(pk=pool.pk).update(evictions=F("evictions") + 1)


def model_bytes(dep: Deployment) -> int:
    """Bytes a model takes when loaded: its artifact's size, else its checkpoint directory's."""
    if dep.artifact_id and dep.artifact.size_bytes:
        return dep.artifact.size_bytes
    from pathlib import Path

    path = Path(dep.model_version.source_uri)
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) if path.is_dir() else 0


def place_all() -> dict[str, str]:
    """One placement pass over every active deployment (agents and the beat task call it; it is idempotent)."""
    from django.db import DatabaseError

    node_state.mark_lost_nodes()
    results = {}
    for dep_id, name in Deployment.objects.values_list("pk", "name"):
        try:
            results[name] = place(dep_id)
        except DatabaseError as exc:  # e.g. a deadlock with a concurrent pass: the next pass retries
            results[name] = f"placement retry: {exc}"
    return results
