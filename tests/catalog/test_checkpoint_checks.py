"""Registration refuses a checkpoint that could not serve, with the reason, through the command, the admin API and
the console form; it records whether the tokenizer has a chat template."""
import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from appliance.catalog.models import Model, ModelVersion
from appliance.runtime.tiny_models import build_tokenizer, save_tokenizer

pytestmark = pytest.mark.django_db

VOCAB_REASON = "the tokenizer has 2048 tokens but config.json's vocab_size is 1000"


@pytest.fixture(scope="module")
def vocab_1000_with_2048_tokenizer(tmp_path_factory) -> Path:
    """The checkpoint a new user brought: config vocab_size 1000, a tokenizer of 2048 tokens."""
    from appliance.runtime.tiny_models import make_checkpoint

    path = make_checkpoint(tmp_path_factory.mktemp("mismatch") / "ckpt", "llama", vocab_size=1000)
    tok = build_tokenizer(1000)
    tok.add_tokens([f"<extra_{i}>" for i in range(2048 - len(tok))])
    assert len(tok) == 2048
    save_tokenizer(tok, path)
    return path


def test_a_tokenizer_larger_than_the_vocabulary_is_refused_by_the_command(vocab_1000_with_2048_tokenizer):
    with pytest.raises(CommandError) as exc:
        call_command("register_model", "mismatch", str(vocab_1000_with_2048_tokenizer), stdout=io.StringIO())
    assert VOCAB_REASON in str(exc.value)
    assert not Model.objects.exists() and not ModelVersion.objects.exists()


def test_the_admin_api_refuses_it_with_the_reason(staff_api, vocab_1000_with_2048_tokenizer):
    response = staff_api.post("/api/catalog/models/register/",
                              {"name": "mismatch", "path": str(vocab_1000_with_2048_tokenizer)}, format="json")
    assert response.status_code == 400
    assert VOCAB_REASON in response.json()["path"][0]
    assert not Model.objects.exists()


def test_the_console_form_shows_the_reason(client, staff, vocab_1000_with_2048_tokenizer):
    client.force_login(staff)
    page = client.post("/models/register/", {"name": "mismatch", "path": str(vocab_1000_with_2048_tokenizer),
                                             "description": ""})
    assert page.status_code == 200
    assert VOCAB_REASON.replace("'", "&#x27;") in page.content.decode()
    assert not Model.objects.exists()


def edited_copy(source: Path, dest: Path, **config_changes) -> Path:
    path = shutil.copytree(source, dest)
    config = json.loads((path / "config.json").read_text())
    config.update(config_changes)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("change, reason", [
    ({"hidden_size": 48}, "wide but config.json's hidden_size is 48"),
    ({"vocab_size": 4096}, "rows but config.json's vocab_size is 4096"),
    ({"num_hidden_layers": 7}, "layers but config.json's num_hidden_layers is 7"),
])
def test_weights_that_disagree_with_the_config_are_refused(tiny_llama, tmp_path, change, reason):
    from appliance.catalog.services import CheckpointError, register_model_version

    with pytest.raises(CheckpointError, match=reason):
        register_model_version("edited", edited_copy(tiny_llama, tmp_path / "edited", **change))
    assert not Model.objects.exists()


def test_a_file_that_is_not_safetensors_is_refused_not_crashed_on(tiny_llama, tmp_path):
    from appliance.catalog.services import CheckpointError, register_model_version

    path = shutil.copytree(tiny_llama, tmp_path / "garbage")
    next(path.glob("*.safetensors")).write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        register_model_version("garbage", path)


def test_the_chat_template_is_recorded_present_or_not(tiny_llama, tmp_path):
    out = io.StringIO()
    call_command("register_model", "with-template", str(tiny_llama), stdout=out)
    assert ModelVersion.objects.get(model__name="with-template").has_chat_template is True
    assert "chat template: yes" in out.getvalue()

    plain = shutil.copytree(tiny_llama, tmp_path / "plain")
    config_file = plain / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    out = io.StringIO()
    call_command("register_model", "plain", str(plain), stdout=out)
    assert ModelVersion.objects.get(model__name="plain").has_chat_template is False
    assert "chat template: no (completions only)" in out.getvalue()
