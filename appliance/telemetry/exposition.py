"""The /metrics exposition: this process's registry, occupancy samples, replica states, and each ready engine
replica's own metrics relabelled with its deployment and replica."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from appliance.catalog.models import Deployment, Replica

from .services import latest_samples

SCRAPE_TIMEOUT_S = 2.0


def scrape(replica: Replica) -> str:
    if replica.socket_path:
        transport = httpx.HTTPTransport(uds=replica.socket_path)
        with httpx.Client(transport=transport, timeout=SCRAPE_TIMEOUT_S) as client:
            return client.get("http://replica/metrics", headers=replica.auth_headers).text
    return httpx.get(f"{replica.base_url}/metrics", headers=replica.auth_headers, timeout=SCRAPE_TIMEOUT_S).text


class ApplianceCollector:
    """Collects on demand; registered in a fresh registry per scrape so nothing is cached between scrapes."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas

    def collect(self):
        yield from self._occupancy()
        yield from self._replica_states()
        yield from self._engine_metrics()

    def _occupancy(self):
        labels = ["node", "device", "core", "deployment", "replica"]
        util = GaugeMetricFamily("appliance_core_utilization_percent", "Accelerator core (or process) utilization", labels=labels)
        memory = GaugeMetricFamily("appliance_core_memory_bytes", "Device memory used (resident memory on CPU)", labels=labels)
        for s in latest_samples():
            values = [
                s.node.name,
                s.device,
                "" if s.core is None else str(s.core),
                s.replica.deployment.name if s.replica else "",
                str(s.replica_id or ""),
            ]
            util.add_metric(values, s.utilization_pct)
            memory.add_metric(values, s.memory_bytes)
        yield util
        yield memory

    def _replica_states(self):
        cold = GaugeMetricFamily("appliance_replica_cold_start_seconds", "Process start to first token", labels=["deployment", "replica"])
        up = GaugeMetricFamily("appliance_replica_ready", "1 when the replica is ready", labels=["deployment", "replica", "state"])
        restarts = GaugeMetricFamily("appliance_replica_restarts", "Restarts by the node agent", labels=["deployment", "replica"])
        for r in Replica.objects.select_related("deployment").exclude(state=Replica.State.STOPPED):
            key = [r.deployment.name, str(r.id)]
            up.add_metric(key + [r.state], 1.0 if r.state == Replica.State.READY else 0.0)
            restarts.add_metric(key, r.restart_count)
            if r.cold_start_s is not None:
                cold.add_metric(key, r.cold_start_s)
        yield cold
        yield up
        yield restarts
        yield self._cold_start_phases()

    @staticmethod
    def _cold_start_phases():
        """The phases of each deployment's last replica start, from its kept record (there after scale to zero)."""
        phases = GaugeMetricFamily("appliance_cold_start_phase_seconds",
                                   "Seconds per phase of the deployment's last replica start (artifact_fetch, "
                                   "process_start, import_runtime, weight_load or compile_cache_hit, warm_up, first_ready: the total)",
                                   labels=["deployment", "phase"])
        for name, starts in Deployment.objects.exclude(cold_starts=[]).values_list("name", "cold_starts"):
            for phase, seconds in (starts[0].get("phases") or {}).items():
                phases.add_metric([name, phase], float(seconds))
        return phases

    def _engine_metrics(self):
        if not self.replicas:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(self.replicas))) as pool:
            texts = list(pool.map(self._safe_scrape, self.replicas))
        merged: dict[str, Metric] = {}
        for replica, text in zip(self.replicas, texts):
            if not text:
                continue
            extra = {"deployment": replica.deployment.name, "replica": str(replica.id)}
            for family in text_string_to_metric_families(text):
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, **extra}, sample.value, sample.timestamp)
        yield from merged.values()

    @staticmethod
    def _safe_scrape(replica: Replica) -> str:
        try:
            return scrape(replica)
        except httpx.HTTPError:
            return ""


def render() -> bytes:
    replicas = list(Replica.objects.filter(state=Replica.State.READY).select_related("deployment"))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ApplianceCollector(replicas))
    return generate_latest(REGISTRY) + generate_latest(registry)
