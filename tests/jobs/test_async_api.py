"""Async inference end to end: submit to /v1/async/..., get an id, poll it, fetch the result (uvicorn gateway, a real
Celery worker, an engine replica, PostgreSQL, Redis)."""
from __future__ import annotations

import httpx
import pytest

from tests.lifecycle.conftest import wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.celery]


def call(live, method: str, path: str, key: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, f"{live.v1}/{path}", json=body, headers={"Authorization": f"Bearer {key}"},
                         timeout=30)


def test_an_async_chat_request_is_queued_polled_and_its_result_fetched(live, make_tenant):
    from appliance.tenancy.models import UsageRecord

    tenant, other = make_tenant(), make_tenant()
    body = {"model": tenant.model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5,
            "temperature": 0}
    submitted = call(live, "POST", "async/chat/completions", tenant.key, body)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["object"] == "async_request" and job["status"] == "queued" and job["id"].startswith("areq_")

    def finished():
        data = call(live, "GET", f"async/{job['id']}", tenant.key).json()
        return data if data["status"] in ("completed", "failed") else None

    done = wait_until(finished, 60, "the async request to finish", interval=0.2)
    assert done["status"] == "completed" and done["error"] is None, done
    result = done["response"]
    assert result["object"] == "chat.completion" and result["choices"][0]["message"]["role"] == "assistant"
    assert 1 <= result["usage"]["completion_tokens"] <= 5
    # the gateway writes usage rows in batches, within ~50 ms of a request's end
    row = wait_until(lambda: UsageRecord.objects.filter(request_id=result["id"]).first(), 10, "the usage row")
    assert "-async-" in row.request_id and row.tenant_id == tenant.id and row.status_code == 200
    assert (row.prompt_tokens, row.completion_tokens) == (result["usage"]["prompt_tokens"],
                                                          result["usage"]["completion_tokens"])

    for method in ("GET", "DELETE"):  # another tenant: the same 404 as an id that does not exist
        foreign = call(live, method, f"async/{job['id']}", other.key)
        missing = call(live, method, "async/areq_nope", other.key)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == "not_found"
    assert call(live, "GET", f"async/{job['id']}", "sk-wrong").status_code == 401


def test_a_bad_async_request_is_refused_at_submission_by_name(live, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    ok = {"model": tenant.model, "prompt": "hi", "max_tokens": 2}
    cases = [
        ({**ok, "max_tokens": 0}, 400, "max_tokens"),
        ({**ok, "temperature": 9}, 400, "temperature"),
        ({**ok, "stream": True}, 400, "stream"),
        ({**ok, "model": other.model}, 404, "model"),  # another tenant's model: same as an unknown one
        ({**ok, "model": "no-such-model"}, 404, "model"),
    ]
    for body, status, param in cases:
        resp = call(live, "POST", "async/completions", tenant.key, body)
        assert resp.status_code == status and resp.json()["error"]["param"] == param, (body, resp.text)
    resp = httpx.post(f"{live.v1}/async/completions", content=b"{not json",
                      headers={"Authorization": f"Bearer {tenant.key}"})
    assert resp.status_code == 400 and "JSON" in resp.json()["error"]["message"]
    assert call(live, "GET", "async/completions", tenant.key).status_code == 405
