"""What first boot finds on this machine, recorded on its Node row: the EC2 instance type (IMDSv2), the Neuron driver
for the running kernel, and neuron-ls's chips and NeuronCores (or why there are none).

`python manage.py register_node --device neuron` runs it; ami/scripts/firstboot.sh calls that after building and
loading the driver. The findings land in Node.inventory["detection"] and the console's Nodes page shows them.
"""
from __future__ import annotations

from typing import Any

from django.utils import timezone

from .driver import driver_status
from .instance import InstanceTypeUnknown, instance_type
from .inventory import register_node


def expected_cores(found_type: str) -> int | None:
    """NeuronCores an inf2/trn1 instance type has (None for other types)."""
    from appliance.runtime.neuron.instances import INSTANCES

    known = INSTANCES.get(found_type)
    return known.cores if known else None


def probe(device: str, imds_timeout_s: float = 2.0) -> dict[str, Any]:
    """Instance type and (on neuron) driver state; never raises for what the machine lacks, records it instead."""
    found: dict[str, Any] = {"at": timezone.now().isoformat(timespec="seconds"), "device": device, "problems": []}
    try:
        found["instance_type"] = instance_type(timeout_s=imds_timeout_s)
    except InstanceTypeUnknown as exc:
        found["instance_type"] = ""
        found["problems"].append(f"instance type unknown: {exc}")
    if device == "neuron":
        driver = driver_status()
        found["driver"] = driver.as_dict()
        if driver.detail and driver.state != "loaded":
            found["problems"].append(f"Neuron driver {driver.state}: {driver.detail}")
    return found


def register_this_node(name: str, device: str, address: str | None = None,
                       imds_timeout_s: float = 2.0) -> tuple[Any, dict[str, Any]]:
    """Probe, then create or refresh the Node row with the real instance type and core count; returns (node, found)."""
    found = probe(device, imds_timeout_s)
    node = register_node(name, device, address, instance_type=found["instance_type"], detection=found)
    if device == "neuron":
        if node.inventory.get("error"):
            found["problems"].append(node.inventory["error"])
        want = expected_cores(found["instance_type"]) if found["instance_type"] else None
        if want is not None and node.cores != want:
            found["problems"].append(f"neuron-ls shows {node.cores} NeuronCores; a {found['instance_type']} has {want}")
        found["expected_cores"] = want
    found["chips"], found["cores"] = node.chips, node.cores
    node.inventory = {**node.inventory, "detection": found}
    node.save(update_fields=["inventory"])
    return node, found
