"""Usage rows match what clients received; tenants never see each other's models, keys or usage."""
from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from .conftest import World, committed, make_key, raw_post, start_gateway, stop_gateway

pytestmark = pytest.mark.django_db


def usage_row(request_id: str):
    """The request's usage row (written in batches, so within a moment of the response)."""
    from appliance.tenancy.models import UsageRecord

    rows = UsageRecord.objects.select_related("tenant", "api_key").filter(request_id=request_id)
    deadline = time.monotonic() + 10
    while not rows.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows.get()


def test_a_gateway_stopped_right_after_its_requests_still_writes_their_usage_rows(world: World, tmp_path):
    from appliance.tenancy.models import UsageRecord

    key, plaintext = committed(make_key, "shutdown", ["tiny"])
    gateway = start_gateway(tmp_path, GATEWAY_USAGE_BATCH_S="30")  # rows wait in the queue until the shutdown
    try:
        async def burst() -> list:
            async with openai.AsyncOpenAI(base_url=gateway.v1, api_key=plaintext, max_retries=0, timeout=60) as c:
                return await asyncio.gather(*[c.completions.create(model=world.model, prompt=f"bill me {i}",
                                                                   max_tokens=3) for i in range(8)])

        answers = asyncio.run(burst())
    finally:
        stop_gateway(gateway)  # SIGTERM: the server finishes its requests, then the lifespan writes the queue
    rows = {r.request_id: r for r in UsageRecord.objects.filter(api_key_id=key.pk)}
    assert sorted(rows) == sorted(a.id for a in answers)
    assert all(rows[a.id].completion_tokens == a.usage.completion_tokens for a in answers)


def test_usage_rows_equal_the_tokens_the_client_received(client, world: World):
    whole = client.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=5)
    row = usage_row(whole.id)
    assert (row.prompt_tokens, row.completion_tokens) == (whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert row.status_code == 200 and row.endpoint == "/v1/chat/completions" and row.model_name == world.model
    assert row.tenant.name.startswith("acme") and row.latency_ms > 0 and row.ttft_ms is not None

    chunks = list(client.completions.create(model=world.model, prompt="count", max_tokens=6, n=2, stream=True,
                                            stream_options={"include_usage": True}))
    streamed_usage = chunks[-1].usage
    row = usage_row(chunks[0].id)
    assert row.completion_tokens == streamed_usage.completion_tokens
    assert row.prompt_tokens == streamed_usage.prompt_tokens


def test_errors_are_recorded_with_their_status(client, world: World):
    response = raw_post(world, "completions", {"model": world.model, "prompt": "x", "temperature": -1})
    assert response.status_code == 400
    usage_row(response.headers["x-request-id"])
    from appliance.tenancy.models import UsageRecord

    row = UsageRecord.objects.get(request_id=response.headers["x-request-id"])
    assert row.status_code == 400 and row.tenant.name.startswith("acme") and row.completion_tokens == 0


def test_a_key_sees_only_its_tenants_models(world: World):
    mine = openai.OpenAI(base_url=world.appliance.v1, api_key=world.globex_key, max_retries=0)
    assert [m.id for m in mine.models.list()] == [world.other_model]
    with pytest.raises(openai.NotFoundError):
        mine.completions.create(model=world.model, prompt="x", max_tokens=1)
    out = mine.completions.create(model=world.other_model, prompt="x", max_tokens=2)
    assert usage_row(out.id).tenant.name.startswith("globex")


@pytest.mark.parametrize("path", ["/api/tenancy/api-keys/", "/api/tenancy/usage-records/", "/api/tenancy/tenants/",
                                  "/api/tenancy/usage-rollups/", "/api/catalog/deployments/"])
def test_tenant_api_keys_open_no_admin_endpoint(world: World, path: str):
    response = httpx.get(world.appliance.url + path, headers={"Authorization": f"Bearer {world.acme_key}"})
    assert response.status_code in (401, 403, 404)
    assert "sk-" not in response.text and "globex" not in response.text


def id_routes() -> list[str]:
    """Every route under /v1/ that takes an id, from the URL configuration itself (so a new one is covered), as
    paths with one `{}` where the id goes."""
    from django.urls import URLPattern, URLResolver, get_resolver
    from django.urls.resolvers import RoutePattern

    found = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern) and isinstance(p.pattern, RoutePattern) and "<" in route:
                import re

                found.append(re.sub(r"<[^>]+>", "{}", prefix + route))

    walk(get_resolver().url_patterns, "")
    return sorted({r for r in found if r.startswith("v1/")})


def test_the_route_list_covers_every_kind_of_tenant_object():
    routes = id_routes()
    for expected in ("v1/files/{}", "v1/files/{}/content", "v1/batches/{}", "v1/batches/{}/cancel",
                     "v1/async/{}", "v1/responses/{}", "v1/models/{}"):
        assert expected in routes, routes


def test_another_tenant_gets_404_for_every_id_through_every_route(world: World):
    """Tenant B (globex) tries every id tenant A (acme) owns (file, batch, async request, stored response, usage
    row, key, model) through every /v1 route that takes an id, with every method: 404 (405 where the route has no
    such method), never the object; A's objects are untouched afterwards."""
    import io
    import json

    from appliance.tenancy.models import APIKey

    a = openai.OpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0, timeout=60)
    line = {"custom_id": "a-1", "method": "POST", "url": "/v1/completions",
            "body": {"model": world.model, "prompt": "acme's private line", "max_tokens": 1}}
    file = a.files.create(file=("acme.jsonl", io.BytesIO(json.dumps(line).encode() + b"\n")), purpose="batch")
    batch = a.batches.create(input_file_id=file.id, endpoint="/v1/completions", completion_window="24h")
    queued = raw_post(world, "async/completions", {"model": world.model, "prompt": "acme async", "max_tokens": 1})
    assert queued.status_code == 202
    stored = a.responses.create(model=world.model, input="acme's stored conversation", max_output_tokens=2)
    used = a.completions.create(model=world.model, prompt="acme usage", max_tokens=1)
    usage_row(used.id)
    key = APIKey.objects.filter(tenant__name__startswith="acme").first()
    ids = [file.id, batch.id, queued.json()["id"], stored.id, used.id, key.prefix, str(key.pk), world.model]

    b_headers = {"Authorization": f"Bearer {world.globex_key}"}
    tried = 0
    for route in id_routes():
        statuses = set()
        for object_id in ids:
            url = f"{world.appliance.url}/{route.format(object_id)}"
            for method in ("GET", "POST", "DELETE"):
                response = httpx.request(method, url, headers=b_headers, json={} if method == "POST" else None,
                                         timeout=30)
                statuses.add(response.status_code)
                tried += 1
                assert response.status_code in (404, 405), (method, url, response.status_code, response.text)
                for secret in ("acme", "private line", "stored conversation") + tuple(i for i in ids[:5]
                                                                                     if i != object_id):
                    assert secret not in response.text, (method, url, response.text)
        assert 404 in statuses, route
    print(f"tenant B tried {len(ids)} of tenant A's ids through {len(id_routes())} routes: {tried} requests, "
          "all 404/405")
    assert a.files.retrieve(file.id).id == file.id and a.batches.retrieve(batch.id).status != "cancelled"
    assert a.responses.retrieve(stored.id).id == stored.id
    assert httpx.get(f"{world.appliance.v1}/async/{queued.json()['id']}",
                     headers={"Authorization": f"Bearer {world.acme_key}"}).status_code == 200
