"""python manage.py neuron_plan: the plan's text or JSON, and an exit code that says whether it fits."""
from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from appliance.catalog.models import Model, ModelVersion
from tests.neuron.test_plan import LLAMA_3_8B

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def llama_3_8b(db, tmp_path):
    """A registered Llama-3-8B (config.json recorded; no weights needed to plan)."""
    model = Model.objects.create(name="llama-3-8b", architecture="LlamaForCausalLM", family="llama")
    ModelVersion.objects.create(model=model, version=1, source_uri=str(tmp_path / "absent"), config=LLAMA_3_8B,
                                context_length=8192, dtype="bfloat16")
    return model


def run(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("neuron_plan", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_registered_model_on_inf2_xlarge_prints_the_refusal_and_exits_1(llama_3_8b):
    out, err = run("llama-3-8b", "--instance", "inf2.xlarge")
    assert err is not None and err.returncode == 1
    assert out.startswith("Neuron plan for llama-3-8b:v1 on inf2.xlarge") and "REFUSED" in out
    assert "tp_degree        2" in out and "graphs           17" in out
    assert "fix: use pre-sharded weights or inf2.8xlarge" in out
    assert "host memory" in str(err) and "pre-sharded weights or inf2.8xlarge" in str(err)


def test_registered_model_on_inf2_8xlarge_fits_and_exits_0(llama_3_8b):
    out, err = run("llama-3-8b", "--instance", "inf2.8xlarge")
    assert err is None and "inf2.8xlarge (2 NeuronCores, 128 GiB host memory): fits" in out


def test_options_and_json_output(llama_3_8b):
    out, err = run("llama-3-8b", "--instance", "inf2.8xlarge", "--options", '{"max_model_len": 8192}', "--json")
    data = json.loads(out)
    assert err is None and data["fits"] and data["graphs"]["context_encoding"] == 30
    assert data["options"]["max_model_len"] == 8192 and data["instance"] == "inf2.8xlarge"


@pytest.mark.parametrize("args, words", [
    (("ghost", "--instance", "inf2.xlarge"), "neither a registered model nor a checkpoint directory"),
    (("llama-3-8b", "--instance", "inf3.xlarge"), "instance type 'inf3.xlarge' is not supported"),
    (("llama-3-8b", "--options", "{nope"), "--options is not JSON"),
    (("llama-3-8b", "--options", '{"tp": 2}'), "tp: is not a neuron compile option"),
])
def test_bad_input_exits_2_with_what_to_change(llama_3_8b, args, words):
    out, err = run(*args)
    assert err is not None and err.returncode == 2 and words in str(err)


def test_checkpoint_directory_from_the_shell_exits_non_zero_when_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_3_8B))
    cmd = [sys.executable, "manage.py", "neuron_plan", str(tmp_path), "--instance"]
    refused = subprocess.run(cmd + ["inf2.xlarge"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "REFUSED" in refused.stdout and "pre-sharded weights or inf2.8xlarge" in refused.stderr
    fits = subprocess.run(cmd + ["inf2.8xlarge"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert fits.returncode == 0 and ": fits" in fits.stdout
