"""First boot's probes (instance type, driver, neuron-ls) and `manage.py register_node`, against TEST DOUBLES: a local
stand-in for EC2's metadata service and fake `neuron-ls` / `modinfo` scripts on PATH (see host_doubles.py for what
they do not prove)."""
from __future__ import annotations

import os
import socket
import time

import pytest
from django.core.management import CommandError, call_command

from appliance.catalog.models import Node
from appliance.lifecycle.driver import LOADED, MISSING, NOT_LOADED, driver_status
from appliance.lifecycle.instance import InstanceTypeUnknown, instance_type
from appliance.lifecycle.inventory import register_node
from tests.lifecycle.host_doubles import FakeIMDS, fake_neuron_ls, fake_tool
from tests.telemetry.test_neuron_ls import INF2_24XL  # neuron-ls --json-output of an inf2.24xlarge (6 chips)

NO_DRIVER = "modinfo: ERROR: Module neuron not found."


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    """A directory of fake tools put first on PATH."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}:{os.environ['PATH']}")
    return path


@pytest.fixture
def imds(monkeypatch):
    with FakeIMDS("inf2.24xlarge") as fake:
        monkeypatch.setenv("APPLIANCE_IMDS_URL", fake.url)
        yield fake


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_instance_type_takes_an_imdsv2_token_then_reads_the_type(imds):
    assert instance_type() == "inf2.24xlarge"
    assert imds.calls == [("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/instance-type")]


def test_no_metadata_service_is_a_clear_error_and_fast():
    started = time.monotonic()
    with pytest.raises(InstanceTypeUnknown, match="latest/api/token.*not on EC2"):
        instance_type(f"http://127.0.0.1:{_closed_port()}", timeout_s=1.0)
    assert time.monotonic() - started < 3


def test_driver_missing_for_the_running_kernel(bin_dir):
    fake_tool(bin_dir, "modinfo", stderr=NO_DRIVER, exit_status=1)
    status = driver_status()
    assert status.state == MISSING and status.kernel == os.uname().release
    assert "Module neuron not found" in status.detail


def test_driver_built_but_not_loaded_then_loaded(bin_dir, tmp_path):
    fake_tool(bin_dir, "modinfo", stdout="2.26.10.0")
    sys_module = tmp_path / "sys-module"
    sys_module.mkdir()
    assert driver_status(sys_module_dir=sys_module).state == NOT_LOADED
    (sys_module / "neuron").mkdir()
    status = driver_status(sys_module_dir=sys_module)
    assert (status.state, status.version) == (LOADED, "2.26.10.0")


@pytest.mark.django_db
def test_register_node_records_instance_type_chips_and_cores(imds, bin_dir, capsys):
    fake_neuron_ls(bin_dir, INF2_24XL)
    fake_tool(bin_dir, "modinfo", stdout="2.26.10.0")
    call_command("register_node", "--device", "neuron", "--node", "inf2-a")
    node = Node.objects.get(name="inf2-a")
    assert (node.device, node.instance_type, node.chips, node.cores) == ("neuron", "inf2.24xlarge", 6, 12)
    assert node.memory_per_core_bytes == 16 * 2**30
    found = node.inventory["detection"]
    assert found["instance_type"] == "inf2.24xlarge" and found["expected_cores"] == 12
    assert found["driver"]["version"] == "2.26.10.0"
    assert "inf2.24xlarge, 6 chips, 12 cores" in capsys.readouterr().out


@pytest.mark.django_db
def test_register_node_without_a_driver_records_why_and_offers_no_cores(imds, bin_dir, capsys):
    fake_tool(bin_dir, "modinfo", stderr=NO_DRIVER, exit_status=1)
    fake_tool(bin_dir, "neuron-ls", stderr="No Neuron devices found (is the driver loaded?)", exit_status=1)
    call_command("register_node", "--device", "neuron", "--node", "inf2-b")
    node = Node.objects.get(name="inf2-b")
    assert (node.instance_type, node.cores) == ("inf2.24xlarge", 0)
    problems = node.inventory["detection"]["problems"]
    assert any("Neuron driver missing" in p and "Module neuron not found" in p for p in problems)
    assert any("neuron-ls failed: No Neuron devices found" in p for p in problems)
    assert any("a inf2.24xlarge has 12" in p for p in problems)
    assert "problem: Neuron driver missing" in capsys.readouterr().err
    with pytest.raises(CommandError, match="problem"):
        call_command("register_node", "--device", "neuron", "--node", "inf2-b", "--strict")


@pytest.mark.django_db
def test_off_ec2_the_instance_type_is_unknown_not_a_failure(bin_dir, monkeypatch):
    monkeypatch.setenv("APPLIANCE_IMDS_URL", f"http://127.0.0.1:{_closed_port()}")
    fake_neuron_ls(bin_dir, INF2_24XL[:1])
    fake_tool(bin_dir, "modinfo", stdout="2.26.10.0")
    call_command("register_node", "--device", "neuron", "--node", "dev-box", "--imds-timeout", "0.5")
    node = Node.objects.get(name="dev-box")
    assert (node.instance_type, node.cores) == ("", 2)
    assert any(p.startswith("instance type unknown") for p in node.inventory["detection"]["problems"])


@pytest.mark.django_db
def test_the_agents_registration_keeps_what_first_boot_found(imds, bin_dir):
    fake_neuron_ls(bin_dir, INF2_24XL)
    fake_tool(bin_dir, "modinfo", stdout="2.26.10.0")
    call_command("register_node", "--device", "neuron", "--node", "inf2-c")
    node = register_node("inf2-c", "neuron")  # what the node agent does when it starts
    assert node.instance_type == "inf2.24xlarge" and node.cores == 12
    assert node.inventory["detection"]["instance_type"] == "inf2.24xlarge"
