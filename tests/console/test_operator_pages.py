"""The operator's pages of issue 15, server side: the playground's own key, the advisor from measured figures, usage
with cost, errors by kind and a per-key split, and what a deployment serves from."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Replica
from appliance.console.playground import PLAYGROUND_TENANT
from appliance.telemetry.models import EngineSample
from appliance.tenancy.models import APIKey, AuditLog, UsageRecord
from appliance.tenancy.services import authenticate_key, create_api_key, create_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def deployment(catalog_model):
    dep = Deployment.objects.create(name="tiny-llama", model_version=catalog_model.versions.get(), status="running",
                                    mode="per_model", min_replicas=0, max_replicas=2, idle_timeout_s=600)
    node = Node.objects.create(name="n1", device="cpu", instance_type="inf2.xlarge", cores=2,
                               memory_per_core_bytes=16 << 30)
    Replica.objects.create(deployment=dep, node=node, index=0, state="ready", cores=[0], port=1234, cold_start_s=2.0)
    Replica.objects.create(deployment=dep, node=node, index=1, state="stopped", cores=[1], cold_start_s=4.0)
    return dep


@pytest.mark.parametrize("url", ["/playground/", "/advisor/"])
def test_operator_pages_need_a_staff_login(client, regular_user, url):
    assert client.get(url).url.startswith("/login/")
    client.force_login(regular_user)
    assert client.get(url).status_code == 302


def test_the_playground_gets_a_fresh_internal_key_that_the_gateway_accepts(console, staff, deployment):
    page = console.get("/playground/?model=tiny-llama")
    assert page.status_code == 200 and page["Cache-Control"].startswith("max-age=0")
    plaintext = re.search(r'data-key="([^"]+)"', page.content.decode()).group(1)
    key = authenticate_key(plaintext)
    assert key.tenant.name == PLAYGROUND_TENANT and key.tenant.all_models and key.name == "playground:admin"
    assert timedelta(hours=1) < key.expires_at - timezone.now() <= timedelta(hours=2)
    assert AuditLog.objects.filter(actor=staff, object_type="tenancy.apikey", action="create").exists()
    assert '<option value="tiny-llama" selected>' in page.content.decode()
    second = re.search(r'data-key="([^"]+)"', console.get("/playground/").content.decode()).group(1)
    assert second != plaintext and authenticate_key(plaintext) is not None  # another tab's key keeps working
    assert APIKey.objects.filter(tenant__name=PLAYGROUND_TENANT).count() == 2


def test_the_advisor_scores_from_the_measured_cold_start_and_ttft(console, deployment):
    replica = deployment.replicas.get(index=0)
    for p95 in (0.08, 0.12, 0.4):
        EngineSample.objects.create(replica=replica, interval_s=5, ttft_p95_s=p95, tokens_per_s=40.0)
    page = console.get("/advisor/", {"model": "tiny-llama", "latency_slo_ms": 800, "traffic": "spiky",
                                     "requests_per_min": 1, "tolerates_cold_start": "on", "tenants_sharing": 1})
    assert page.status_code == 200
    data = json.loads(re.search(r'<script id="advisor-data" type="application/json">(.*?)</script>',
                                page.content.decode(), re.S).group(1))
    figures = data["figures"]
    assert figures["cold_start_s"] == 3.0 and "2 start(s)" in figures["sources"]["cold_start_s"]
    assert figures["ttft_p95_s"] == 0.12 and "3 engine sample" in figures["sources"]["ttft_p95_s"]
    assert figures["price_per_core_hour"] == round(0.7582 / 2, 5)
    assert figures["idle_timeout_s"] == 600
    assert data["recommended"] == "per_model" and {o["option"] for o in data["options"]} == {
        "dedicated", "shared", "per_model"}
    assert "Recommended" in page.content.decode()


def test_the_advisor_refuses_bad_needs_with_a_message(console, deployment):
    page = console.get("/advisor/", {"model": "tiny-llama", "latency_slo_ms": -1, "traffic": "steady",
                                     "requests_per_min": 1, "tenants_sharing": 1})
    assert page.status_code == 400 and "greater than or equal to 1" in page.content.decode()


def test_usage_shows_cost_errors_by_kind_and_a_per_key_split(console, deployment):
    acme, globex = create_tenant("acme"), create_tenant("globex")
    (k1, _), (k2, _) = create_api_key(acme, name="web"), create_api_key(acme, name="batch")
    k3 = create_api_key(globex)[0]
    rows = [(acme, k1, 200, 100, 100), (acme, k2, 200, 50, 50), (globex, k3, 200, 80, 20),
            (acme, k1, 429, 0, 0), (acme, k1, 429, 0, 0), (acme, k1, 400, 0, 0), (globex, k3, 400, 0, 0),
            (globex, k3, 503, 0, 0)]
    for i, (tenant, key, status, prompt, completion) in enumerate(rows):
        UsageRecord.objects.create(tenant=tenant, api_key=key, model_name="tiny-llama", request_id=f"req-{i}",
                                   endpoint="chat", status_code=status, prompt_tokens=prompt,
                                   completion_tokens=completion)
    AuditLog.objects.create(action="input_block", object_type="gateway.request", object_id="req-6")
    replica = deployment.replicas.get(index=0)
    EngineSample.objects.create(replica=replica, interval_s=3600)  # one core up for an hour: 0.7582 / 2 USD
    page = console.get("/usage/").content.decode()
    by_model = re.search(r'<table class="grid" id="usage-by-model">(.*?)</table>', page, re.S).group(1)
    acme_row = re.search(r'data-tenant="acme".*?</tr>', by_model, re.S).group(0)
    globex_row = re.search(r'data-tenant="globex".*?</tr>', by_model, re.S).group(0)
    cells = lambda row: re.findall(r'<td class="num">([^<]*)</td>', row)  # noqa: E731
    assert cells(acme_row) == ["5", "2", "0", "1", "0", "150", "150", "0.2843"]  # 300 of 400 tokens
    assert cells(globex_row) == ["3", "0", "1", "0", "1", "80", "20", "0.0948"]
    assert re.search(r'id="err-rate_limited">2<', page) and re.search(r'id="err-content_filtered">1<', page)
    assert re.search(r'id="err-failed">1<', page) and "$0.3791" in page
    by_key = re.search(r'<table class="grid" id="usage-by-key">(.*?)</table>', page, re.S).group(1)
    assert f"sk-{k1.prefix}-" in by_key and f"sk-{k2.prefix}-" in by_key and "batch" in by_key
    series = json.loads(re.search(r'<script id="usage-series" type="application/json">(.*?)</script>', page,
                                  re.S).group(1))
    tokens = {s["label"]: sum(v for _, v in s["points"]) for s in series["charts"][0]["series"]}
    assert tokens == {"acme": 300, "globex": 100}


def test_playground_usage_is_marked_internal_and_not_billed(console, staff, deployment):
    from appliance.console.playground import issue_key

    key, _ = issue_key(staff)
    UsageRecord.objects.create(tenant=key.tenant, api_key=key, model_name="tiny-llama", request_id="p",
                               endpoint="chat", prompt_tokens=10, completion_tokens=10)
    EngineSample.objects.create(replica=deployment.replicas.get(index=0), interval_s=3600)
    page = console.get("/usage/").content.decode()
    assert "(internal)" in page and 'id="cost-billed">$0.0000<' in page and 'id="cost-internal">$0.3791<' in page


def test_a_deployment_without_an_artifact_says_it_serves_the_registered_checkpoint(console, deployment):
    page = console.get("/deployments/tiny-llama/").content.decode()
    assert "not compiled yet" not in page
    assert "the registered checkpoint <code>/nowhere</code>" in page


def test_the_dashboard_splits_errors_by_kind(console, deployment):
    tenant = create_tenant("acme")
    for status in (429, 429, 503):
        UsageRecord.objects.create(tenant=tenant, model_name="tiny-llama", request_id="r", endpoint="chat",
                                   status_code=status)
    [row] = console.get("/console/live.json").json()["deployments"]
    assert row["errors"] == 3
    assert row["errors_by_kind"] == {"rate_limited": 2, "content_filtered": 0, "rejected": 0, "failed": 1}
