"""Each error status, raised by the official client as its matching exception class, in OpenAI's error shape."""
from __future__ import annotations

import openai
import pytest

from .conftest import World, committed, make_key, raw_post

pytestmark = pytest.mark.django_db


def client_for(world: World, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.appliance.v1, api_key=key or "", max_retries=0, timeout=30)


def test_missing_malformed_and_unknown_keys_are_401(world: World):
    for key in ("sk-000000000000-nope", "not-a-key"):
        with pytest.raises(openai.AuthenticationError) as exc:
            client_for(world, key).models.list()
        assert exc.value.status_code == 401 and exc.value.body["code"] == "invalid_api_key"
    response = raw_post(world, "completions", {"model": world.model, "prompt": "x"}, key="")
    assert response.status_code == 401 and set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_revoked_and_expired_keys_are_401(world: World):
    import datetime as dt

    from django.utils import timezone

    from appliance.tenancy.models import APIKey
    from appliance.tenancy.services import create_api_key, revoke_api_key

    def keys():
        key, plaintext = make_key("revoked", ["tiny"])
        revoke_api_key(key)
        expiring, expiring_plain = create_api_key(key.tenant, expires_at=timezone.now() + dt.timedelta(seconds=1))
        return plaintext, expiring_plain, expiring.pk

    revoked, expiring, expiring_pk = committed(keys)
    with pytest.raises(openai.AuthenticationError):
        client_for(world, revoked).completions.create(model=world.model, prompt="x", max_tokens=1)
    committed(lambda: APIKey.objects.filter(pk=expiring_pk).update(expires_at=timezone.now()))
    with pytest.raises(openai.AuthenticationError):
        client_for(world, expiring).completions.create(model=world.model, prompt="x", max_tokens=1)


def test_unknown_model_and_another_tenants_model_are_the_same_404(client, world: World):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as foreign:
        client.chat.completions.create(model=world.other_model, messages=[{"role": "user", "content": "x"}])
    normalize = lambda body, name: {k: str(v).replace(name, "M") for k, v in body.items()}  # noqa: E731
    assert normalize(unknown.value.body, "no-such-model") == normalize(foreign.value.body, world.other_model)
    assert unknown.value.body["code"] == "model_not_found" and unknown.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(world.other_model)


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "temperature": 5}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "presence_penalty": 3}, "presence_penalty"),
    ({"prompt": "x", "stop": [1]}, "stop"),
    ({"prompt": "x", "logprobs": 99}, "logprobs"),
    ({"prompt": "", "max_tokens": 1}, "prompt"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({}, "prompt"),
])
def test_invalid_completion_parameters_are_400_naming_the_parameter(world: World, body, param):
    response = raw_post(world, "completions", {"model": world.model, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]


def test_invalid_chat_requests_raise_bad_request(client, world: World):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, messages=[])
    assert exc.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, messages=[{"role": "wizard", "content": "x"}])
    assert exc.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "x"}],
                                       top_logprobs=2)
    assert exc.value.body["param"] == "top_logprobs"


def test_malformed_json_and_missing_model_are_400(world: World):
    response = raw_post(world, "chat/completions", b"{not json")
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    response = raw_post(world, "chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


def test_prompt_longer_than_the_context_is_400_context_length_exceeded(client, world: World):
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=world.model, prompt="word " * 5000, max_tokens=4)
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "word " * 5000}],
                                       max_tokens=4, stream=True)
    assert exc.value.body["code"] == "context_length_exceeded"


def test_no_replica_ready_in_time_is_503_with_retry_after_and_wakes_the_deployment(client, world: World):
    from appliance.catalog.models import Deployment

    with pytest.raises(openai.InternalServerError) as exc:
        client.completions.create(model=world.cold_model, prompt="x", max_tokens=1)
    assert exc.value.status_code == 503 and int(exc.value.response.headers["retry-after"]) > 0
    dep = Deployment.objects.get(name=world.cold_model)
    assert dep.desired_replicas >= 1 and dep.last_request_at is not None
