"""neuron-monitor reports written from the documented JSON schema (Neuron Monitor User Guide, SDK 2.28)."""
from __future__ import annotations

from typing import Any


def runtime(pid: int, tag: str, cores: dict[int, float], memory: dict[int, int], completed: int = 10,
            latency: dict | None = None) -> dict[str, Any]:
    return {
        "pid": pid,
        "address": "",
        "neuron_runtime_tag": tag,
        "error": "",
        "report": {
            "neuroncore_counters": {
                "period": 1.0,
                "neuroncores_in_use": {
                    str(c): {"neuroncore_utilization": u, "flops": 1234} for c, u in cores.items()
                },
                "error": "",
            },
            "execution_stats": {
                "period": 1.0,
                "error_summary": {"generic": 0, "numerical": 1, "transient": 0, "model": 0, "runtime": 0, "hardware": 0},
                "execution_summary": {
                    "completed": completed, "completed_with_err": 1, "completed_with_num_err": 0,
                    "timed_out": 0, "incorrect_input": 0, "failed_to_queue": 2,
                },
                "latency_stats": latency if latency is not None else {
                    "total_latency": {"p0": 0.01, "p1": 0.011, "p25": 0.012, "p50": 0.013, "p75": 0.014, "p99": 0.02, "p100": 0.03},
                    "device_latency": {"p0": 0.009, "p1": 0.01, "p25": 0.011, "p50": 0.012, "p75": 0.013, "p99": 0.018, "p100": 0.025},
                },
                "error": "",
            },
            "memory_used": {
                "period": 1.0,
                "neuron_runtime_used_bytes": {
                    "host": 6997643264,
                    "neuron_device": sum(memory.values()),
                    "usage_breakdown": {
                        "host": {"application_memory": 6996594688, "constants": 0, "dma_buffers": 1048576, "tensors": 0},
                        "neuroncore_memory_usage": {
                            str(c): {"constants": m // 2, "model_code": m // 4, "model_shared_scratchpad": 0,
                                     "runtime_memory": 0, "tensors": m - m // 2 - m // 4}
                            for c, m in memory.items()
                        },
                    },
                },
                "loaded_models": [],
                "error": "",
            },
            "neuron_runtime_vcpu_usage": {"period": 1.0, "vcpu_usage": {"user": 42.0, "system": 12.0}, "error": ""},
        },
    }


def report(*runtimes: dict[str, Any]) -> dict[str, Any]:
    return {
        "neuron_runtime_data": list(runtimes),
        "system_data": {
            "memory_info": {"period": 5.0, "memory_total_bytes": 49345835008, "memory_used_bytes": 16042344448,
                            "swap_total_bytes": 0, "swap_used_bytes": 0, "error": ""},
        },
        "instance_info": {"instance_type": "inf2.xlarge", "instance_id": "i-0011223344556677a", "error": ""},
        "neuron_hardware_info": {
            "neuron_device_type": "inferentia2", "neuroncore_version": "v2", "neuron_device_count": 1,
            "neuron_device_memory_size": 34359738368, "neuroncore_per_device_count": 2, "error": "",
        },
    }
