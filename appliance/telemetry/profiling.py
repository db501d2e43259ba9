"""Profiling a replica: ``neuron-profile`` on Neuron, ``torch.profiler`` inside the replica elsewhere.

Neuron (aws-neuronx-tools 2.28): ``neuron-profile capture -n NEFF -s NTFF --profile-nth-exec=2`` runs the compiled
program with device tracing, then ``neuron-profile view -n NEFF -s NTFF --output-format summary-json`` prints a JSON
object whose single value holds the summary counters. The Neuron path is written from the Neuron Profiler user
guide and has not run on hardware here. CPU/CUDA: the replica's internal server profiles its own engine loop for a
few seconds (POST /profile) and writes a Chrome trace plus a per-operator summary.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx


def artifact_neffs(artifact_dir: Path) -> list[Path]:
    """The NEFFs a compile kept: NxD Inference embeds them in model.pt, so the compile copies each bucket's
    ``graph.neff`` from the compiler's work directory to ``neffs/<submodel>/bk<i>.neff`` (nxdi_backend.compile)."""
    return sorted((artifact_dir / "neffs").rglob("*.neff"))


def free_cores_env(replica: Any) -> dict[str, str]:
    """NEURON_RT_VISIBLE_CORES for a profiling run on free cores of the replica's node, as many as the replica has.

    neuron-profile loads and runs the NEFF itself, and the Neuron runtime gives a NeuronCore to one process: the
    live replica's cores cannot be shared, so the profile runs beside it or not at all."""
    from appliance.lifecycle.placement import free_run, used_cores
    from appliance.runtime.neuron.cores import visible_cores_env

    node = replica.node
    size = len(replica.cores or [])
    run = free_run(sorted(set(range(node.cores)) - used_cores(node)), size)
    if run is None:
        raise RuntimeError(f"profiling needs {size} free contiguous NeuronCores on node {node.name} (neuron-profile "
                           "runs the NEFF itself and cannot share the live replica's cores); scale a deployment down "
                           "or free cores, then profile again")
    return visible_cores_env(run, size, node.cores)


def neuron_profile_commands(neff: Path, out_dir: Path) -> tuple[list[str], list[str]]:
    ntff = out_dir / f"{neff.stem}.ntff"
    capture = ["neuron-profile", "capture", "-n", str(neff), "-s", str(ntff), "--profile-nth-exec=2"]
    view = ["neuron-profile", "view", "-n", str(neff), "-s", str(ntff), "--output-format", "summary-json"]
    return capture, view


def parse_summary_json(text: str) -> dict[str, Any]:
    """neuron-profile prints log lines before the JSON on some versions; take the object and unwrap its one key."""
    start = text.find("{")
    if start < 0:
        raise ValueError("neuron-profile view printed no JSON summary")
    data = json.loads(text[start:])
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), dict):
        return next(iter(data.values()))
    return data


def profile_neuron(neffs: list[Path], out_dir: Path, env: dict[str, str], timeout_s: float = 600) -> dict[str, Any]:
    summaries = {}
    for neff in neffs:
        capture, view = neuron_profile_commands(neff, out_dir)
        subprocess.run(capture, check=True, env=env, timeout=timeout_s, capture_output=True, text=True)
        result = subprocess.run(view, check=True, env=env, timeout=timeout_s, capture_output=True, text=True)
        summaries[neff.name] = parse_summary_json(result.stdout)
    return summaries


def profile_engine(base_url: str, seconds: float, out_dir: Path, uds: str = "",
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST /profile to a replica (`headers`: its credential, Replica.auth_headers)."""
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    with httpx.Client(transport=transport, timeout=seconds + 60, headers=headers) as client:
        response = client.post(f"{base_url}/profile", json={"seconds": seconds, "output_dir": str(out_dir)})
        response.raise_for_status()
        return response.json()
