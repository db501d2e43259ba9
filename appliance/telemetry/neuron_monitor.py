"""neuron-monitor: its configuration, the parser of its JSON reports, and a sampler that keeps it running.

neuron-monitor (aws-neuronx-tools) streams one JSON report per line on stdout. The schema follows the Neuron
Monitor User Guide (SDK 2.28): ``neuron_runtime_data[]`` (one entry per Neuron application: pid,
neuron_runtime_tag, error, report{neuroncore_counters, memory_used, execution_stats, neuron_runtime_vcpu_usage}),
``system_data``, ``instance_info`` and ``neuron_hardware_info``. This module has been exercised against reports
written from that documented schema, not against a live neuron-monitor on Inferentia hardware.
"""
from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

RUNTIME_METRIC_GROUPS = ("neuroncore_counters", "memory_used", "execution_stats", "neuron_runtime_vcpu_usage")


def monitor_config(period_s: float = 5.0, tag_filter: str = ".*") -> dict[str, Any]:
    """The configuration file neuron-monitor is started with (``neuron-monitor -c FILE``)."""
    return {
        "period": f"{period_s:g}s",
        "neuron_runtimes": [
            {"tag_filter": tag_filter, "metrics": [{"type": group} for group in RUNTIME_METRIC_GROUPS]}
        ],
        "system_metrics": [{"type": "vcpu_usage"}, {"type": "memory_info"}, {"type": "neuron_hw_counters"}],
    }


@dataclass(frozen=True)
class CoreSample:
    core: int
    utilization_pct: float
    memory_bytes: int
    pid: int | None = None
    tag: str = ""


@dataclass(frozen=True)
class RuntimeStats:
    pid: int | None
    tag: str
    error: str = ""
    completed: int = 0
    failed: int = 0  # completed_with_err + completed_with_num_err + timed_out + incorrect_input + failed_to_queue
    errors: dict[str, int] = field(default_factory=dict)  # error_summary: generic, numerical, transient, ...
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    device_latency_p50_s: float | None = None
    host_memory_bytes: int = 0
    device_memory_bytes: int = 0


@dataclass(frozen=True)
class MonitorReport:
    cores: list[CoreSample]
    runtimes: list[RuntimeStats]
    instance_type: str = ""
    device_count: int = 0
    cores_per_device: int = 0
    device_memory_bytes: int = 0


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _group(report: dict[str, Any], name: str) -> dict[str, Any]:
    """A metric group, or {} when it is absent or reported an error."""
    group = report.get(name) or {}
    if not isinstance(group, dict):
        return {}
    if group.get("error"):
        log.debug("neuron-monitor %s error: %s", name, group["error"])
    return group


def _core_memory(memory_used: dict[str, Any]) -> dict[int, int]:
    breakdown = (memory_used.get("neuron_runtime_used_bytes") or {}).get("usage_breakdown") or {}
    per_core = breakdown.get("neuroncore_memory_usage") or {}
    return {int(core): sum(_int(v) for v in parts.values()) for core, parts in per_core.items() if str(core).isdigit()}


def _percentile(latency: dict[str, Any] | None, key: str) -> float | None:
    if not latency or latency.get(key) is None:
        return None
    return float(latency[key])


def _runtime_stats(entry: dict[str, Any], report: dict[str, Any]) -> RuntimeStats:
    stats = _group(report, "execution_stats")
    summary = stats.get("execution_summary") or {}
    latency = stats.get("latency_stats") or {}
    memory = (_group(report, "memory_used").get("neuron_runtime_used_bytes")) or {}
    failed_keys = ("completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input", "failed_to_queue")
    return RuntimeStats(
        pid=entry.get("pid"),
        tag=str(entry.get("neuron_runtime_tag") or ""),
        error=str(entry.get("error") or ""),
        completed=_int(summary.get("completed")),
        failed=sum(_int(summary.get(k)) for k in failed_keys),
        errors={k: _int(v) for k, v in (stats.get("error_summary") or {}).items()},
        latency_p50_s=_percentile(latency.get("total_latency"), "p50"),
        latency_p99_s=_percentile(latency.get("total_latency"), "p99"),
        device_latency_p50_s=_percentile(latency.get("device_latency"), "p50"),
        host_memory_bytes=_int(memory.get("host")),
        device_memory_bytes=_int(memory.get("neuron_device")),
    )


def parse_report(report: dict[str, Any]) -> MonitorReport:
    """One neuron-monitor JSON report -> per-core samples and per-runtime execution statistics.

    Tolerates what the tool really emits: runtimes that come and go between reports, a runtime entry whose
    ``error`` is set and whose report is empty, metric groups with an ``error``, and null latency objects.
    """
    cores: dict[int, CoreSample] = {}
    runtimes: list[RuntimeStats] = []
    for entry in report.get("neuron_runtime_data") or []:
        if not isinstance(entry, dict):
            continue
        runtime_report = entry.get("report") or {}
        runtimes.append(_runtime_stats(entry, runtime_report))
        in_use = _group(runtime_report, "neuroncore_counters").get("neuroncores_in_use") or {}
        memory = _core_memory(_group(runtime_report, "memory_used"))
        for core_key in set(in_use) | {str(c) for c in memory}:
            if not str(core_key).isdigit():
                continue
            core = int(core_key)
            utilization = float((in_use.get(str(core_key)) or {}).get("neuroncore_utilization") or 0.0)
            cores[core] = CoreSample(
                core=core,
                utilization_pct=utilization,
                memory_bytes=memory.get(core, 0),
                pid=entry.get("pid"),
                tag=str(entry.get("neuron_runtime_tag") or ""),
            )
    hardware = report.get("neuron_hardware_info") or {}
    return MonitorReport(
        cores=sorted(cores.values(), key=lambda c: c.core),
        runtimes=runtimes,
        instance_type=str((report.get("instance_info") or {}).get("instance_type") or ""),
        device_count=_int(hardware.get("neuron_device_count")),
        cores_per_device=_int(hardware.get("neuroncore_per_device_count")),
        device_memory_bytes=_int(hardware.get("neuron_device_memory_size")),
    )


class NeuronMonitorSampler:
    """Runs neuron-monitor, parses each report, hands it to ``on_report``; restarts the tool when it exits.

    ``command`` defaults to ``["neuron-monitor", "-c", CONFIG]``; tests substitute an executable that writes
    documented-schema reports, since the real tool needs the Neuron driver.
    """

    def __init__(
        self,
        on_report: Callable[[MonitorReport], None],
        command: list[str] | None = None,
        config_path: str | None = None,
        period_s: float = 5.0,
        restart_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.on_report = on_report
        self.period_s = period_s
        self.config_path = config_path
        self.command = command
        self.restart_backoff_s = restart_backoff_s
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self.parse_errors = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def _command(self) -> list[str]:
        if self.command:
            return self.command
        if self.config_path is None:
            import tempfile

            fd, self.config_path = tempfile.mkstemp(prefix="neuron-monitor-", suffix=".json")
            with open(fd, "w") as fh:
                json.dump(monitor_config(self.period_s), fh)
        return ["neuron-monitor", "-c", self.config_path]

    def start(self) -> "NeuronMonitorSampler":
        self._thread = threading.Thread(target=self._run, name="neuron-monitor-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.restart_backoff_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._proc = subprocess.Popen(
                    self._command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
                )
            except OSError as exc:
                log.warning("cannot start neuron-monitor: %s", exc)
            else:
                self._consume(self._proc)
            if self._stop.is_set():
                break
            if time.monotonic() - started > 60:
                backoff = self.restart_backoff_s
            self.restarts += 1
            log.warning("neuron-monitor exited; restarting in %.1fs", backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _consume(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if self._stop.is_set():
                break
            line = line.strip()
            if not line:
                continue
            try:
                parsed = parse_report(json.loads(line))
            except (ValueError, TypeError, AttributeError) as exc:
                self.parse_errors += 1
                log.warning("unparseable neuron-monitor report: %s", exc)
                continue
            try:
                self.on_report(parsed)
            except Exception:  # a consumer's bug must not kill the sampler
                log.exception("neuron-monitor report consumer failed")
        proc.wait()
