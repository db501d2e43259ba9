"""Turn Neuron / NVML / process readings into OccupancySample rows mapped to the replicas that own the cores."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from appliance.catalog.models import Device, Node, Replica

from . import host
from .models import OccupancySample
from .neuron_monitor import MonitorReport

LIVE_STATES = (Replica.State.STARTING, Replica.State.READY, Replica.State.DRAINING)


def live_replicas(node: Node) -> list[Replica]:
    return list(Replica.objects.filter(node=node, state__in=LIVE_STATES).select_related("deployment"))


def core_owners(replicas: list[Replica]) -> dict[int, Replica]:
    return {int(core): replica for replica in replicas for core in replica.cores or []}


def record_neuron_report(node: Node, report: MonitorReport) -> list[OccupancySample]:
    """Store one parsed neuron-monitor report: one sample per NeuronCore in use, owned by its replica."""
    replicas = live_replicas(node)
    owners = core_owners(replicas)
    by_pid = {r.pid: r for r in replicas if r.pid}
    runtimes = {r.pid: r for r in report.runtimes}
    rows = []
    for core in report.cores:
        runtime = runtimes.get(core.pid)
        extra = {}
        if runtime is not None:
            extra = {
                "latency_p50_s": runtime.latency_p50_s,
                "latency_p99_s": runtime.latency_p99_s,
                "completed": runtime.completed,
                "failed": runtime.failed,
                "errors": runtime.errors,
            }
        rows.append(
            OccupancySample(
                node=node,
                replica=owners.get(core.core) or by_pid.get(core.pid),
                device=Device.NEURON,
                core=core.core,
                utilization_pct=core.utilization_pct,
                memory_bytes=core.memory_bytes,
                extra=extra,
            )
        )
    return OccupancySample.objects.bulk_create(rows)


def sample_host(node: Node) -> list[OccupancySample]:
    """CUDA nodes: NVML per GPU; CPU nodes: each live replica's process."""
    replicas = live_replicas(node)
    rows = []
    if node.device == Device.CUDA:
        owners = core_owners(replicas)
        for gpu in host.nvml_samples() or []:
            rows.append(
                OccupancySample(
                    node=node,
                    replica=owners.get(gpu.index),
                    device=Device.CUDA,
                    core=gpu.index,
                    utilization_pct=gpu.utilization_pct,
                    memory_bytes=gpu.memory_bytes,
                )
            )
    else:
        for replica in replicas:
            if not replica.pid:
                continue
            sample = host.process_sample(replica.pid)
            if sample is not None:
                rows.append(
                    OccupancySample(
                        node=node,
                        replica=replica,
                        device=Device.CPU,
                        utilization_pct=sample.utilization_pct,
                        memory_bytes=sample.memory_bytes,
                    )
                )
    return OccupancySample.objects.bulk_create(rows)


def latest_samples(max_age_s: float = 120.0) -> list[OccupancySample]:
    """The newest sample per (node, device, core, replica) within max_age_s."""
    since = timezone.now() - timedelta(seconds=max_age_s)
    newest: dict[tuple, OccupancySample] = {}
    for sample in (
        OccupancySample.objects.filter(created_at__gte=since)
        .select_related("node", "replica__deployment")
        .order_by("created_at")
    ):
        newest[(sample.node_id, sample.device, sample.core, sample.replica_id)] = sample
    return list(newest.values())


def series(replica_id: int, since_s: float = 3600.0) -> list[dict]:
    """A replica's occupancy over time, for the console's charts."""
    since = timezone.now() - timedelta(seconds=since_s)
    return [
        {"t": s.created_at.isoformat(), "core": s.core, "utilization_pct": s.utilization_pct, "memory_bytes": s.memory_bytes}
        for s in OccupancySample.objects.filter(replica_id=replica_id, created_at__gte=since).order_by("created_at")
    ]


def prune(older_than_s: float = 7 * 24 * 3600) -> int:
    deleted, _ = OccupancySample.objects.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than_s)).delete()
    return deleted
