"""What the replicas did during a level: mean batch size, KV use and core utilization.

A thread scrapes each ready replica's /metrics while the level runs: FIRST_SAMPLE_S after it starts (a level of a
small model can be over within SAMPLE_S; with no reading its KV use would be unknown), then every SAMPLE_S. Mean
batch size is the change in the engine's step_num_seqs histogram (sequences summed over steps / steps) across the
level; KV use the mean of the
kv_blocks_used / kv_blocks_total gauges sampled while the level ran (not the idle moments before its first request
and after its last); core utilization the mean of the telemetry OccupancySample rows the appliance stored for those
replicas during the level (neuron-monitor on Neuron, NVML on CUDA), or, where none were stored, the replica
process's CPU time over the level's wall time as a share of the machine's CPUs (as the telemetry's own CPU samples
count it; a replica whose pid the appliance knows).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime

import httpx
from django.db.models import Avg
from django.utils import timezone

from appliance.catalog.models import Replica
from appliance.telemetry.engine_sampler import parse_metrics
from appliance.telemetry.exposition import scrape
from appliance.telemetry.models import OccupancySample

SAMPLE_S = 0.1
FIRST_SAMPLE_S = 0.02  # the first in-level reading comes early: a small model can finish a level within SAMPLE_S


def _cpu_seconds(pid: int | None) -> float | None:
    import psutil

    if not pid:
        return None
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class LevelSampler:
    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.kv: list[float] = []
        self.first: dict[int, dict] = {}
        self.last: dict[int, dict] = {}
        self.cpu_start: dict[int, float | None] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-sampler")
        self.started_at: datetime | None = None
        self.t0 = 0.0

    def start(self) -> None:
        self.started_at, self.t0 = timezone.now(), time.perf_counter()
        self.cpu_start = {r.pk: _cpu_seconds(r.pid) for r in self.replicas}
        self._sample(keep_kv=False)
        self.thread.start()

    def _sample(self, keep_kv: bool = True) -> None:
        used = total = 0.0
        for r in self.replicas:
            try:
                reading = parse_metrics(scrape(r))
            except (httpx.HTTPError, ValueError):
                continue
            hist = reading.histograms.get("step_num_seqs", {"sum": 0.0, "count": 0.0})
            self.first.setdefault(r.pk, hist)
            self.last[r.pk] = hist
            used += reading.gauges.get("kv_blocks_used", 0.0)
            total += reading.gauges.get("kv_blocks_total", 0.0)
        if total and keep_kv:
            self.kv.append(used / total)

    def _run(self) -> None:
        wait = FIRST_SAMPLE_S
        while not self.stopped.wait(wait):
            self._sample()
            wait = SAMPLE_S

    def stop(self) -> dict:
        """Stop sampling; the level's mean_batch_size, kv_use and core_utilization (None where unknown)."""
        self.stopped.set()
        self.thread.join()
        self._sample(keep_kv=False)
        wall = time.perf_counter() - self.t0
        seqs = sum(self.last[pk]["sum"] - self.first[pk]["sum"] for pk in self.last)
        steps = sum(self.last[pk]["count"] - self.first[pk]["count"] for pk in self.last)
        return {
            "mean_batch_size": seqs / steps if steps else None,
            "kv_use": sum(self.kv) / len(self.kv) if self.kv else None,
            "core_utilization": self._utilization(wall),
        }

    def _utilization(self, wall_s: float) -> float | None:
        stored = OccupancySample.objects.filter(replica__in=self.replicas, created_at__gte=self.started_at) \
            .aggregate(u=Avg("utilization_pct"))["u"]
        if stored is not None:
            return stored / 100.0
        import psutil

        shares = []
        for r in self.replicas:
            before, after = self.cpu_start.get(r.pk), _cpu_seconds(r.pid)
            if before is not None and after is not None and wall_s > 0:
                shares.append((after - before) / wall_s / (psutil.cpu_count() or 1))
        return sum(shares) / len(shares) if shares else None
