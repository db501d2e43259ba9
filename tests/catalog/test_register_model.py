import io
import json
import shutil

import pytest
from django.core.management import CommandError, call_command

from appliance.catalog.models import Model, ModelVersion
from appliance.catalog.services import CheckpointError, register_model_version, weights_checksum, inspect_checkpoint

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_register_model_reads_the_checkpoint(tiny_llama):
    lines = run("register_model", "tiny-llama", str(tiny_llama))
    version = ModelVersion.objects.get()
    assert lines[-1] == "tiny-llama:v1"
    assert version.model.architecture == "LlamaForCausalLM" and version.model.family == "llama"
    assert version.context_length == 512 and version.dtype == "float32"
    assert version.source_uri == str(tiny_llama.resolve()) and version.tokenizer_uri == version.source_uri
    assert len(version.checksum) == 64
    assert version.checksum == weights_checksum(inspect_checkpoint(tiny_llama).weight_files)
    assert version.config["model_type"] == "llama"


def test_a_new_directory_is_the_next_version_and_same_weights_are_not_duplicated(tiny_llama, tmp_path,
                                                                                 checkpoint_factory):
    v1, created = register_model_version("m", tiny_llama)
    again, created_again = register_model_version("m", tiny_llama)
    assert created and not created_again and again.pk == v1.pk
    qwen = checkpoint_factory("qwen2", max_position_embeddings=256)
    v2, created = register_model_version("m", qwen)
    assert created and v2.version == 2 and v2.context_length == 256
    assert v2.checksum != v1.checksum
    assert Model.objects.count() == 1


def test_checksum_changes_when_weights_change(tiny_llama, tmp_path):
    copy = shutil.copytree(tiny_llama, tmp_path / "copy")
    before = weights_checksum(inspect_checkpoint(copy).weight_files)
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert weights_checksum(inspect_checkpoint(copy).weight_files) != before


def broken(tmp_path, tiny_llama, what):
    path = shutil.copytree(tiny_llama, tmp_path / what)
    if what == "no-config":
        (path / "config.json").unlink()
    elif what == "bad-json":
        (path / "config.json").write_text("{not json")
    elif what == "no-weights":
        for f in path.glob("*.safetensors"):
            f.unlink()
    elif what == "no-tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (path / name).unlink()
    elif what == "no-context":
        config = json.loads((path / "config.json").read_text())
        del config["max_position_embeddings"]
        (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("what, message", [
    ("no-config", "no config.json"),
    ("bad-json", "unreadable JSON"),
    ("no-weights", "no weight files"),
    ("no-tokenizer", "no tokenizer"),
    ("no-context", "no context length"),
])
def test_not_a_checkpoint_is_a_clear_command_error(tmp_path, tiny_llama, what, message):
    path = broken(tmp_path, tiny_llama, what)
    with pytest.raises(CommandError, match=message):
        run("register_model", "m", str(path))
    assert not Model.objects.exists() and not ModelVersion.objects.exists()


def test_missing_directory_s3_and_bad_names_are_refused(tmp_path, tiny_llama):
    for name, path, message in [
        ("m", tmp_path / "missing", "not a directory"),
        ("m", "s3://bucket/model", "only local directories"),
        ("bad name", tiny_llama, "model name"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            register_model_version(name, path)
    assert not Model.objects.exists()


def test_register_through_the_admin_api(staff_api, tiny_llama, tmp_path):
    response = staff_api.post("/api/catalog/models/register/", {"name": "tiny", "path": str(tiny_llama)},
                              format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["model"] == "tiny" and response.json()["version"] == 1
    assert staff_api.post("/api/catalog/models/register/", {"name": "tiny", "path": str(tiny_llama)},
                          format="json").status_code == 200
    bad = staff_api.post("/api/catalog/models/register/", {"name": "tiny", "path": str(tmp_path)}, format="json")
    assert bad.status_code == 400 and "config.json" in bad.json()["path"][0]
    missing = staff_api.post("/api/catalog/models/register/", {"name": "tiny"}, format="json")
    assert missing.status_code == 400 and "path" in missing.json()
