from appliance.telemetry.neuron_ls import parse_neuron_ls

INF2_24XL = [
    {"neuron_device": i, "bdf": f"00:1{i}.0", "connected_to": [(i + 1) % 6], "nc_count": 2,
     "memory_size": 34359738368, "neuron_processes": [{"pid": 100 + i, "command": "python -m appliance.runtime.server",
                                                       "neuron_runtime_version": "2.30.51.0"}] if i == 0 else []}
    for i in range(6)
]


def test_inventory_of_an_inf2_24xlarge():
    inv = parse_neuron_ls(INF2_24XL)
    assert (inv.chips, inv.cores, inv.memory_per_core_bytes) == (6, 12, 16 * 1024**3)
    assert inv.processes == [{"pid": 100, "command": "python -m appliance.runtime.server",
                              "neuron_runtime_version": "2.30.51.0", "neuron_device": 0}]


def test_inventory_accepts_the_wrapped_form_and_empty_output():
    assert parse_neuron_ls({"neuron_devices": INF2_24XL[:1]}).cores == 2
    assert parse_neuron_ls([]).cores == 0 and parse_neuron_ls([]).memory_per_core_bytes == 0
