"""What a node has to offer: engine slots on CPU, GPUs on CUDA, chips/NeuronCores/HBM on Neuron."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from .conf import setting

HBM_PER_NEURONCORE = 16 * 2**30


@dataclass
class Inventory:
    device: str
    cores: int
    chips: int = 0
    memory_per_core_bytes: int = 0
    instance_type: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def cpu_inventory() -> Inventory:
    slots = int(setting("CPU_ENGINE_SLOTS")) or (os.cpu_count() or 1)
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover
        memory = 0
    return Inventory("cpu", cores=slots, memory_per_core_bytes=memory // max(slots, 1),
                     raw={"cpu_count": os.cpu_count(), "memory_bytes": memory, "engine_slots": slots})


def cuda_inventory() -> Inventory:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = [torch.cuda.get_device_properties(i) for i in range(count)]
    return Inventory("cuda", cores=count, memory_per_core_bytes=min((g.total_memory for g in gpus), default=0),
                     raw={"gpus": [{"name": g.name, "memory_bytes": g.total_memory} for g in gpus]})


def neuron_inventory() -> Inventory:
    """From `neuron-ls --json-output` through the telemetry reader; zero cores where the tool is unavailable."""
    try:
        from appliance.telemetry.neuron_ls import read_inventory
    except ImportError:
        return Inventory("neuron", cores=0,
                         raw={"error": "the neuron-ls reader (appliance.telemetry) is not installed"})
    try:
        inv = read_inventory()
    except subprocess.CalledProcessError as exc:  # e.g. no driver loaded: neuron-ls says why on stderr
        why = (exc.stderr or exc.stdout or "").strip() or f"exit status {exc.returncode}"
        return Inventory("neuron", cores=0, raw={"error": f"neuron-ls failed: {why}"})
    except Exception as exc:  # noqa: BLE001 - a broken driver or tool: report it, schedule nothing here
        return Inventory("neuron", cores=0, raw={"error": f"neuron-ls failed: {exc}"})
    if inv is None:
        return Inventory("neuron", cores=0, raw={"error": "neuron-ls not found: no Neuron driver/tools on this node"})
    return Inventory("neuron", cores=inv.cores, chips=inv.chips,
                     memory_per_core_bytes=inv.memory_per_core_bytes or HBM_PER_NEURONCORE,
                     raw={"neuron_ls": inv.devices, "processes": inv.processes})


DETECTORS: dict[str, Callable[[], Inventory]] = {
    "cpu": cpu_inventory, "cuda": cuda_inventory, "neuron": neuron_inventory,
}


def detect(device: str) -> Inventory:
    if device not in DETECTORS:
        raise ValueError(f"device must be one of {', '.join(DETECTORS)}, got {device!r}")
    return DETECTORS[device]()


def register_node(name: str, device: str = "cpu", address: str | None = None, cores: int | None = None,
                  instance_type: str | None = None, detection: dict[str, Any] | None = None):
    """Create or refresh this machine's Node row from its detected inventory (cores may be overridden).

    The instance type and first boot's findings (inventory["detection"], see node_probe.py) are kept from the
    existing row unless given, so the node agent's own registration at start does not erase them; so is the
    address (else NODE_ADDRESS). The node's state (ready, draining, lost) is never changed here.
    """
    from django.conf import settings

    from appliance.catalog.models import Node

    inv = detect(device)
    existing = Node.objects.filter(name=name).first()
    if address is None:
        address = existing.address if existing else settings.NODE_ADDRESS
    if instance_type is None:
        instance_type = inv.instance_type or (existing.instance_type if existing else "")
    raw = dict(inv.raw)
    if detection is not None:
        raw["detection"] = detection
    elif existing is not None and "detection" in (existing.inventory or {}):
        raw["detection"] = existing.inventory["detection"]
    node, _ = Node.objects.update_or_create(
        name=name,
        defaults={"device": device, "cores": cores if cores is not None else inv.cores, "chips": inv.chips,
                  "memory_per_core_bytes": inv.memory_per_core_bytes, "inventory": raw, "address": address,
                  "instance_type": instance_type},
    )
    return node
