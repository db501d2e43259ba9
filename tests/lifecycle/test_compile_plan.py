"""A neuron compile job checks the plan first: it fails fast, before hashing or compiling, with the plan's reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.catalog.models import Node
from appliance.lifecycle.models import CompileJob
from tests.neuron.test_plan import LLAMA_3_8B


@pytest.fixture
def llama_3_8b_dir(tmp_path) -> Path:
    """A Llama-3-8B-shaped checkpoint directory: its config.json only (the plan needs no weights)."""
    path = tmp_path / "llama-3-8b"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(LLAMA_3_8B))
    return path


def neuron_job(version, **fields) -> CompileJob:
    fields = {"target": "neuron", "tp_degree": 2, "dtype": "bfloat16", **fields}
    return CompileJob.objects.create(model_version=version, **fields)


@pytest.mark.django_db
def test_neuron_options_default_to_2048_tokens_not_max_position_embeddings(register_version, llama_3_8b_dir,
                                                                          lc_home):
    from appliance.lifecycle.compile_runner import neuron_options

    job = neuron_job(register_version("llama-3-8b", llama_3_8b_dir))
    assert neuron_options(job, llama_3_8b_dir)["max_model_len"] == 2048
    job.seq_len_buckets = [512, 4096]
    assert neuron_options(job, llama_3_8b_dir)["max_model_len"] == 4096


@pytest.mark.django_db
def test_neuron_compile_on_inf2_xlarge_fails_before_compiling_with_the_plans_reason(register_version, llama_3_8b_dir,
                                                                                   lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    Node.objects.create(name="lc-node", device="neuron", instance_type="inf2.xlarge", cores=2)
    job = neuron_job(register_version("llama-3-8b", llama_3_8b_dir))
    run_compile_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.artifact is None
    assert job.error.startswith("the neuron plan refuses this compile: host memory:")
    assert "inf2.xlarge has 16 GiB" in job.error and "Fix: use pre-sharded weights or inf2.8xlarge" in job.error
    assert job.stage == "planning" and job.digest == ""  # failed before hashing, long before any compile


@pytest.mark.django_db
def test_neuron_compile_on_inf2_8xlarge_passes_the_plan(register_version, llama_3_8b_dir, lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    Node.objects.create(name="lc-node", device="neuron", instance_type="inf2.8xlarge", cores=2)
    (llama_3_8b_dir / "model.safetensors").write_bytes(b"placeholder")  # hashed, never read: no SDK here
    job = neuron_job(register_version("llama-3-8b", llama_3_8b_dir))
    run_compile_job(job.pk)
    job.refresh_from_db()
    assert "plan on inf2.8xlarge: tp_degree 2, 17 graphs" in job.log and job.digest
    assert job.error.startswith("Neuron SDK not installed")  # the next step on a machine without the SDK


@pytest.mark.django_db
def test_neuron_compile_with_a_tp_too_small_for_the_cores_fails_naming_the_option(register_version, llama_3_8b_dir,
                                                                                  lc_home):
    from appliance.lifecycle.compile_runner import run_compile_job

    job = neuron_job(register_version("llama-3-8b", llama_3_8b_dir), tp_degree=1)  # no Node row: instance unknown
    run_compile_job(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "tp_degree: the model does not fit at tp_degree=1" in job.error
    assert "Fix: raise tp_degree (to 2" in job.error and "host memory unchecked" in job.log


def test_a_neuron_artifact_names_the_toolchain_it_was_built_with(monkeypatch):
    """The toolchain is part of the artifact's content address; it used to be "neuron-sdk-unavailable" for every
    neuron artifact (the import it needed did not exist). Under the emulator it says so."""
    from appliance.lifecycle.compile_runner import _toolchain

    monkeypatch.setenv("APPLIANCE_NEURON_SDK", "emulator")
    assert _toolchain("neuron") == "neuron-sdk-2.28.1-emulator"
    monkeypatch.delenv("APPLIANCE_NEURON_SDK")
    assert _toolchain("neuron") == "neuron-sdk-unavailable"  # no SDK on this machine: the compile step says why
