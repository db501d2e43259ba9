"""Node inventory from ``neuron-ls --json-output`` (Neuron SDK 2.28 tools).

neuron-ls prints a JSON array with one object per Neuron device: ``neuron_device`` (index), ``bdf``,
``connected_to``, ``nc_count`` (NeuronCores on the device), ``memory_size`` (bytes) and ``neuron_processes``
(pid, command, neuron_runtime_version). The parser also accepts an object wrapping that list under
``neuron_devices``. Written from the documented fields; not run against the tool on hardware here.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

HBM_PER_CORE_BYTES = 16 * 1024**3  # Inf2 / Trn1: 32 GiB per device, 2 NeuronCores


@dataclass(frozen=True)
class NeuronInventory:
    chips: int
    cores: int
    memory_per_core_bytes: int
    devices: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)


def parse_neuron_ls(data: Any) -> NeuronInventory:
    devices = data.get("neuron_devices", []) if isinstance(data, dict) else list(data or [])
    cores = sum(int(d.get("nc_count") or 0) for d in devices)
    memory = sum(int(d.get("memory_size") or 0) for d in devices)
    processes = [
        {**proc, "neuron_device": d.get("neuron_device")} for d in devices for proc in d.get("neuron_processes") or []
    ]
    return NeuronInventory(
        chips=len(devices),
        cores=cores,
        memory_per_core_bytes=memory // cores if cores else 0,
        devices=devices,
        processes=processes,
    )


def read_inventory(executable: str = "neuron-ls", timeout_s: float = 30.0) -> NeuronInventory | None:
    """Run neuron-ls; None where the tool is not installed (any non-Neuron machine)."""
    path = shutil.which(executable)
    if path is None:
        return None
    out = subprocess.run([path, "--json-output"], capture_output=True, text=True, timeout=timeout_s, check=True)
    return parse_neuron_ls(json.loads(out.stdout))
