"""Node inventory: CPU slots here; Neuron through neuron-ls (a FAKE neuron-ls script printing the documented JSON,
since this machine has no Neuron devices)."""
from __future__ import annotations

import json
import os

import pytest

from appliance.lifecycle.inventory import detect, register_node

FAKE_NEURON_LS = [  # two inf2 devices as neuron-ls --json-output documents them
    {"neuron_device": 0, "bdf": "00:1e.0", "connected_to": None, "nc_count": 2, "memory_size": 34359738368,
     "neuron_processes": []},
    {"neuron_device": 1, "bdf": "00:1f.0", "connected_to": None, "nc_count": 2, "memory_size": 34359738368,
     "neuron_processes": [{"pid": 42, "command": "python", "neuron_runtime_version": "2.28"}]},
]


def test_cpu_inventory_counts_engine_slots(monkeypatch):
    assert detect("cpu").cores == os.cpu_count()
    monkeypatch.setenv("APPLIANCE_CPU_ENGINE_SLOTS", "6")
    assert detect("cpu").cores == 6


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="device must be one of"):
        detect("tpu")


def test_neuron_without_the_tools_offers_no_cores(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    inv = detect("neuron")
    assert inv.cores == 0 and "error" in inv.raw


@pytest.mark.django_db
def test_neuron_node_registers_chips_cores_and_hbm_from_neuron_ls(monkeypatch, tmp_path):
    pytest.importorskip("appliance.telemetry.neuron_ls")
    script = tmp_path / "neuron-ls"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(FAKE_NEURON_LS)}\nEOF\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    node = register_node("inf2-node", "neuron")
    assert (node.chips, node.cores, node.memory_per_core_bytes) == (2, 4, 16 * 2**30)
    assert node.inventory["processes"][0]["pid"] == 42
