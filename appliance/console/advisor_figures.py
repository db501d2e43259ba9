"""The figures the hosting advisor scores from, gathered from what the appliance measured.

Each figure says where it came from in `Figures.sources`: a measurement (replicas' cold starts, engine samples,
usage rows, the node's inventory, the Neuron plan), the deployment's settings, or the assumption used when nothing
was measured yet.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from statistics import median

from django.db.models import Avg, Max
from django.utils import timezone

from appliance.catalog.models import Deployment, Model, Node, Pool, Replica
from appliance.lifecycle import placement
from appliance.telemetry.models import EngineSample
from appliance.tenancy.models import UsageRecord
from appliance.tenancy.usage import percentile

from .advisor import KV_HEADROOM, Figures
from .prices import core_hour_price

LOOKBACK = timedelta(days=7)
ASSUMED_COLD_START_S = {"neuron": 60.0, "cuda": 20.0, "cpu": 5.0}
ASSUMED_TTFT_S = 0.2
ASSUMED_REPLICA_RPS = 1.0


def _host_memory_per_core(node: Node | None) -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
    return total // max(node.cores if node else 1, 1)


def _checkpoint_bytes(source_uri: str) -> int:
    path = Path(source_uri)
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) if path.is_dir() else 0


def gather(model: Model, device: str | None = None) -> Figures:
    """Figures for `model` (its latest version, and its deployment if it has one) on `device` (default: the
    deployment's, else cpu)."""
    sources: dict[str, str] = {}
    version = model.versions.order_by("-version").first()
    if version is None:
        raise ValueError(f"model {model.name!r} has no versions")
    dep = Deployment.objects.filter(model_version__model=model).order_by("-updated_at").first()
    device = device or (dep.device if dep else "cpu")
    nodes = list(Node.objects.filter(device=device).order_by("name"))
    node = nodes[0] if nodes else None
    cores_per_replica = dep.cores_per_replica if dep else 1
    sources["cores_per_replica"] = f"deployment {dep.name}" if dep else "assumed: 1"

    replica_bytes = 0
    if device == "neuron":
        try:
            from appliance.lifecycle.plans import plan_for_deploy

            plan = plan_for_deploy(version, cores_per_replica)
            d = plan.device
            cores_per_replica = plan.tp_degree
            replica_bytes = d.total_bytes_per_core * plan.tp_degree
            sources["replica_bytes"] = f"Neuron plan: weights + KV per core x tp_degree {plan.tp_degree}"
            sources["cores_per_replica"] = f"Neuron plan: tp_degree {plan.tp_degree}"
        except Exception as exc:  # a plan needs config.json; without it, fall back to the checkpoint's size
            sources["replica_bytes"] = f"no Neuron plan ({exc}); "
    if not replica_bytes:
        weights = _checkpoint_bytes(version.source_uri)
        replica_bytes = int(weights * KV_HEADROOM)
        sources["replica_bytes"] = (sources.get("replica_bytes", "")
                                    + f"checkpoint safetensors x {KV_HEADROOM} (KV headroom)")

    if node is not None and node.memory_per_core_bytes:
        core_memory = node.memory_per_core_bytes
        sources["core_memory_bytes"] = f"node {node.name} inventory"
    else:
        core_memory = _host_memory_per_core(node)
        sources["core_memory_bytes"] = "host memory / engine slots (no per-core figure in the inventory)"

    free = 0
    for n in nodes:
        free += n.cores - len(placement.used_cores(n) & set(range(n.cores)))
    if dep is not None:
        free += sum(len(r.cores) for r in dep.replicas.exclude(state=Replica.State.STOPPED))
    sources["free_cores"] = f"free {device} cores on {len(nodes)} node(s)" + (" plus the deployment's own" if dep else "")

    pool = Pool.objects.filter(node__device=device).order_by("name").first()
    pool_cores = pool.cores if pool else cores_per_replica
    pool_models = pool.max_loaded_models if pool else 2
    sources["pool"] = f"pool {pool.name}" if pool else "assumed: a pool of one replica's cores holding 2 models"

    since = timezone.now() - LOOKBACK
    replicas = Replica.objects.filter(deployment__model_version__model=model)
    colds = [c for c in replicas.exclude(cold_start_s=None).values_list("cold_start_s", flat=True)]
    if colds:
        cold_start = median(colds)
        sources["cold_start_s"] = f"median Replica.cold_start_s of {len(colds)} start(s)"
    else:
        same_device = list(Replica.objects.filter(deployment__device=device).exclude(cold_start_s=None)
                           .values_list("cold_start_s", flat=True))
        cold_start = median(same_device) if same_device else ASSUMED_COLD_START_S.get(device, 5.0)
        sources["cold_start_s"] = (f"median cold start of {len(same_device)} other {device} replica(s)"
                                   if same_device else f"assumed for {device}: no replica started yet")

    samples = EngineSample.objects.filter(replica__deployment__model_version__model=model, created_at__gte=since)
    p95s = list(samples.exclude(ttft_p95_s=None).values_list("ttft_p95_s", flat=True))
    names = list(Deployment.objects.filter(model_version__model=model).values_list("name", flat=True))
    usage = UsageRecord.objects.filter(model_name__in=names, created_at__gte=since, status_code__lt=400)
    if p95s:
        ttft = median(p95s)
        sources["ttft_p95_s"] = f"median p95 TTFT of {len(p95s)} engine sample interval(s)"
    else:
        ttfts = [v / 1000 for v in usage.exclude(ttft_ms=None).values_list("ttft_ms", flat=True)]
        ttft = percentile(ttfts, 0.95) if ttfts else ASSUMED_TTFT_S
        sources["ttft_p95_s"] = (f"p95 TTFT of {len(ttfts)} request(s)" if ttfts
                                 else f"assumed: {ASSUMED_TTFT_S} s, nothing measured yet")

    peak = samples.aggregate(peak=Max("tokens_per_s"))["peak"]
    mean_out = usage.aggregate(m=Avg("completion_tokens"))["m"]
    if peak and mean_out:
        replica_rps = peak / mean_out
        sources["replica_rps"] = (f"peak engine tokens/s {peak:.1f} / mean completion {mean_out:.1f} tokens "
                                  "(a lower bound: the peak seen, not the most it can do)")
    else:
        replica_rps = ASSUMED_REPLICA_RPS
        sources["replica_rps"] = f"assumed: {ASSUMED_REPLICA_RPS} request/s per replica"

    price = core_hour_price(node) if node else 0.0
    sources["price_per_core_hour"] = (f"{node.instance_type or 'default'} price / {node.cores} cores" if node
                                      else "no node: 0")
    return Figures(
        replica_bytes=replica_bytes, core_memory_bytes=core_memory, cores_per_replica=cores_per_replica,
        free_cores=free, pool_cores=pool_cores, pool_max_models=pool_models,
        idle_timeout_s=float(dep.idle_timeout_s if dep else 300), cold_start_s=round(cold_start, 3),
        ttft_p95_s=round(ttft, 4), replica_rps=round(replica_rps, 3), price_per_core_hour=round(price, 5),
        sources=sources,
    )
