"""The Files endpoints through Django's request path (no server processes): errors in OpenAI's shape."""
import os
import uuid

import pytest

from tests.gateway.conftest import committed

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(django_db_blocker) -> str:
    def rows() -> str:
        from appliance.tenancy.services import create_api_key, create_tenant

        return create_api_key(create_tenant(f"files-{uuid.uuid4().hex[:8]}"))[1]

    with django_db_blocker.unblock():
        return committed(rows)


def auth(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_files_can_be_listed_by_purpose_and_lost_content_is_a_404_not_a_500(client, key, tmp_path, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.APPLIANCE_HOME = tmp_path
    upload = SimpleUploadedFile("in.jsonl", b'{"custom_id": "a"}\n', content_type="application/jsonl")
    created = client.post("/v1/files", {"file": upload, "purpose": "batch"}, **auth(key)).json()
    assert created["object"] == "file" and created["bytes"] == 19 and created["purpose"] == "batch"
    assert [f["id"] for f in client.get("/v1/files?purpose=batch", **auth(key)).json()["data"]] == [created["id"]]
    assert client.get("/v1/files?purpose=batch_output", **auth(key)).json()["data"] == []
    assert client.get(f"/v1/files/{created['id']}/content", **auth(key)).getvalue() == b'{"custom_id": "a"}\n'

    os.unlink(tmp_path / "files" / f"{created['id']}.jsonl")
    lost = client.get(f"/v1/files/{created['id']}/content", **auth(key))
    assert lost.status_code == 404 and lost.json()["error"]["code"] == "not_found"
    assert client.delete(f"/v1/files/{created['id']}", **auth(key)).json()["deleted"] is True
    assert client.get(f"/v1/files/{created['id']}", **auth(key)).status_code == 404


def test_bad_requests_get_openai_errors(client, key):
    no_file = client.post("/v1/files", {"purpose": "batch"}, **auth(key))
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    not_json = client.post("/v1/batches", b"{nope", content_type="application/json", **auth(key))
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]
    wrong_method = client.put("/v1/batches", **auth(key))
    assert wrong_method.status_code == 405 and wrong_method["Allow"] == "GET, POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    anonymous = client.get("/v1/batches")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
