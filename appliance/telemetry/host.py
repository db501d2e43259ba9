"""Occupancy figures for replicas on CUDA (NVML) and on the CPU (the replica's process)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSample:
    index: int  # GPU index, or the replica's pid for process samples
    utilization_pct: float
    memory_bytes: int


def nvml_samples() -> list[DeviceSample] | None:
    """Per-GPU utilization and memory used from NVML; None where NVML (nvidia-ml-py) is unavailable."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        samples = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            samples.append(DeviceSample(index=i, utilization_pct=float(util.gpu), memory_bytes=int(memory.used)))
        return samples
    finally:
        pynvml.nvmlShutdown()


def process_sample(pid: int, interval_s: float = 0.2) -> DeviceSample | None:
    """CPU use of a replica's process (and its threads) as a share of the machine, and its resident memory."""
    import psutil

    try:
        proc = psutil.Process(pid)
        cpu = proc.cpu_percent(interval=interval_s)
        rss = proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return DeviceSample(index=pid, utilization_pct=cpu / (psutil.cpu_count() or 1), memory_bytes=rss)
