"""The AMI's install set resolves from PyPI: the appliance's requirements under the Neuron 2.28.1 set's PyPI pins
(ami/neuron-pypi-constraints.txt) keep transformers 4.57.x. Needs PyPI; skipped, saying so, when it is unreachable.

Left out: the Neuron-index-only packages (neuronx-cc, torch-neuronx, neuronx-distributed(-inference), libneuronxla),
which pip.repos.neuron.amazonaws.com serves, not PyPI. And torch's wheels: resolving torch 2.9 from PyPI downloads the
900 MB CUDA wheel plus its nvidia-* wheels (measured: pip --dry-run fetched the whole torch-2.9.1 wheel here), so a
TEST DOUBLE stands in for it: a metadata-only wheel `torch 2.9.0+stub` with no dependencies, pinned by a second
constraint. Everything else (measured: 63 wheels, 70 MB, 7-10 s) resolves from PyPI for real.
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPI = "https://pypi.org/simple"
NEURON_INDEX_ONLY = {"neuronx-cc", "torch-neuronx", "neuronx-distributed", "neuronx-distributed-inference",
                     "libneuronxla", "neuronx-cc-stubs", "nki"}
STUB_TORCH = "2.9.0+stub"


def pypi_reachable() -> str:
    try:
        with urllib.request.urlopen(f"{PYPI}/transformers/", timeout=10) as resp:
            resp.read(1)
        return ""
    except OSError as exc:
        return str(exc)


def stub_torch_wheel(folder: Path) -> Path:
    """TEST DOUBLE: a wheel that only declares `torch 2.9.0+stub` (no code, no dependencies) for pip to resolve."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"torch-{STUB_TORCH}.dist-info"
    wheel = folder / f"torch-{STUB_TORCH}-py3-none-any.whl"
    files = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {STUB_TORCH}\n"
                                 "Summary: TEST DOUBLE standing in for torch 2.9 in a pip dry run\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests/ami\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{dist_info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{dist_info}/RECORD,,\n")
    return wheel


def ami_pypi_requirements(path: Path) -> list[str]:
    """requirements.txt minus the Neuron-index-only packages (it lists none today; the AMI installs them first)."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [line for line in lines if line and Requirement(line).name.lower() not in NEURON_INDEX_ONLY]
    path.write_text("\n".join(reqs + ["transformers==4.57.*"]) + "\n")
    return reqs


@pytest.mark.timeout(600)
def test_ami_install_set_resolves_from_pypi_and_keeps_transformers_457(tmp_path):
    why = pypi_reachable()
    if why:
        pytest.skip(f"PyPI ({PYPI}) is unreachable, so the AMI's install set cannot be resolved: {why}")
    stub_torch_wheel(tmp_path / "wheels")
    ami_pypi_requirements(tmp_path / "requirements-ami.txt")
    (tmp_path / "stub-torch.txt").write_text(f"torch=={STUB_TORCH}\n")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
           "--disable-pip-version-check", "--index-url", PYPI, "--find-links", str(tmp_path / "wheels"),
           "--report", str(report), "-c", str(ROOT / "ami" / "neuron-pypi-constraints.txt"),
           "-c", str(tmp_path / "stub-torch.txt"), "-r", str(tmp_path / "requirements-ami.txt")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, f"the AMI's install set does not resolve:\n{result.stderr[-4000:]}"
    chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert chosen["transformers"].startswith("4.57."), chosen["transformers"]
    assert chosen["torch"] == STUB_TORCH  # the stand-in, not a 900 MB download
    assert not any(name.startswith("nvidia-") for name in chosen)
    for name in ("django", "tokenizers", "accelerate", "safetensors", "numpy"):
        assert name in chosen, f"{name} missing from the resolved set"
