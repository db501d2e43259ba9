"""The AMI's provisioning scripts: they parse, the constraints generator writes pip constraints, and the pinned
versions agree with each other. (Nothing here builds or boots the AMI: see ami/README.md.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
AMI = ROOT / "ami"
SCRIPTS = sorted((AMI / "scripts").glob("*.sh"))


def versions_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (AMI / "neuron-versions.env").read_text().splitlines()
             if line and not line.startswith("#"))
    return {k: v.strip('"') for k, v in pairs}


def requirements(path: Path) -> dict[str, Requirement]:
    reqs = (Requirement(line.split("#")[0]) for line in path.read_text().splitlines()
            if line.split("#")[0].strip() and not line.startswith("-"))
    return {r.name.lower(): r for r in reqs}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_ami_installs_no_transformers_neuronx():
    """Retired in SDK 2.26 and built on another torch-neuronx: no script, unit or pin of the AMI mentions it."""
    for path in AMI.rglob("*"):
        if path.is_file() and path.suffix in {".sh", ".env", ".hcl", ".txt", ".service", ".conf"}:
            text = path.read_text().lower()
            assert "transformers-neuronx" not in text and "transformers_neuronx" not in text, path
            assert "tnx" not in text, path


def test_constraints_generator_writes_pins_pip_accepts():
    out = subprocess.run(["bash", str(AMI / "scripts" / "neuron-constraints.sh"), sys.executable],
                         capture_output=True, text=True, check=True).stdout
    pins = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in p and " @ " not in p and not p.startswith("-e") for p in pins)
    frozen = {Requirement(p).name.lower(): p for p in pins}
    import transformers

    assert frozen["transformers"] == f"transformers=={transformers.__version__}"
    assert "pip" not in frozen


def test_requirements_ranges_admit_the_neuron_set_and_the_development_set():
    ranges = requirements(ROOT / "requirements.txt")
    neuron = requirements(AMI / "neuron-pypi-constraints.txt")
    dev = requirements(ROOT / "constraints-dev.txt")
    for name in ("torch", "transformers"):
        assert ranges[name].specifier.contains(next(iter(dev[name].specifier)).version), name
    assert ranges["torch"].specifier.contains("2.9.0") and neuron["torch"].specifier.contains("2.9.0")
    assert ranges["transformers"].specifier.contains("4.57.6") and neuron["transformers"].specifier.contains("4.57.6")
    assert not neuron["transformers"].specifier.contains("5.0.0")


def test_pinned_versions_agree_across_the_ami():
    env = versions_env()
    assert env["NEURON_SDK_VERSION"] == "2.28.1"
    torch_line = ".".join(env["TORCH_NEURONX_VERSION"].split(".")[:2])  # torch-neuronx 2.9.0.x builds on torch 2.9
    assert requirements(AMI / "neuron-pypi-constraints.txt")["torch"].specifier == SpecifierSet(f"=={torch_line}.*")
    requirements_step = (AMI / "scripts" / "32-appliance-requirements.sh").read_text()
    assert "-c /opt/appliance/constraints-neuron.txt -r /opt/appliance/requirements.txt" in requirements_step
    neuron_step = (AMI / "scripts" / "31-neuron-python.sh").read_text()
    assert "-c /tmp/ami/neuron-pypi-constraints.txt" in neuron_step
    assert "> /opt/appliance/constraints-neuron.txt" in neuron_step
