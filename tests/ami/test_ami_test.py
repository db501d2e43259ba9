"""The parts of make ami-test (ami/test/) that need no root and no Debian root: the script list it reads from the
template, the copy of the template Debian's packer validates, and the Neuron stand-ins' checks of the pins, which must
fail when a pin and the real script disagree. (make ami-test itself runs the install; see ami/README.md.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AMI = ROOT / "ami"
STANDINS = AMI / "test" / "standins"
sys.path.insert(0, str(AMI / "test"))

import static_checks  # noqa: E402  (ami/test is a folder of scripts, not a package)


def test_the_template_runs_every_provisioning_script_in_order():
    scripts = static_checks.packer_scripts(AMI / "appliance.pkr.hcl")
    assert scripts == ["scripts/10-base.sh", "scripts/20-neuron.sh", "scripts/30-appliance.sh",
                       "scripts/31-neuron-python.sh", "scripts/32-appliance-requirements.sh", "scripts/40-services.sh"]
    assert all((AMI / s).is_file() for s in scripts)


def test_each_stand_in_replaces_a_script_the_template_runs_and_says_so():
    scripts = {Path(s).name for s in static_checks.packer_scripts(AMI / "appliance.pkr.hcl")}
    standins = sorted(p.name for p in STANDINS.glob("*.sh"))
    assert standins == ["20-neuron.sh", "31-neuron-python.sh"]
    for name in standins:
        assert name in scripts
        assert "STAND-IN" in (STANDINS / name).read_text().splitlines()[1]


def test_the_validated_template_differs_only_by_the_required_plugins_block():
    text = (AMI / "appliance.pkr.hcl").read_text()
    stripped, removed = static_checks.REQUIRED_PLUGINS.subn("", text, count=1)
    assert removed == 1
    assert "required_plugins" not in stripped
    assert stripped.count("\n") == text.count("\n") - 8  # the 8 lines of packer { required_plugins { amazon } }
    for block in ('source "amazon-ebs" "appliance"', 'provisioner "shell"', 'variable "region"'):
        assert block in stripped


def run_standin(name: str, ami: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "AMI_DIR": str(ami), "PROFILE_D": str(tmp_path), "STANDIN_CHECK_ONLY": "1"}
    return subprocess.run(["bash", str(STANDINS / name)], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("name", ["20-neuron.sh", "31-neuron-python.sh"])
def test_stand_in_accepts_the_pins_as_they_are(name, tmp_path):
    result = run_standin(name, AMI, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("pinned:") == 4


@pytest.mark.parametrize("name, variable, package", [
    ("20-neuron.sh", "NEURON_TOOLS_VERSION", "aws-neuronx-tools"),
    ("31-neuron-python.sh", "TORCH_NEURONX_VERSION", "torch-neuronx"),
])
def test_stand_in_fails_when_the_real_script_stops_using_a_pin(name, variable, package, tmp_path):
    ami = tmp_path / "ami"
    shutil.copytree(AMI, ami, ignore=shutil.ignore_patterns("build", "test"))
    real = ami / "scripts" / name
    real.write_text(real.read_text().replace(f"${{{variable}}}", "1.0"))
    result = run_standin(name, ami, tmp_path)
    assert result.returncode == 1
    assert package in result.stderr and variable in result.stderr


def test_stand_in_fails_on_a_pin_that_is_not_a_version(tmp_path):
    ami = tmp_path / "ami"
    shutil.copytree(AMI, ami, ignore=shutil.ignore_patterns("build", "test"))
    env = ami / "neuron-versions.env"
    env.write_text(env.read_text().replace("NEURON_DKMS_VERSION=2.26.10.0", "NEURON_DKMS_VERSION=latest"))
    result = run_standin("20-neuron.sh", ami, tmp_path)
    assert result.returncode == 1
    assert "NEURON_DKMS_VERSION='latest'" in result.stderr
