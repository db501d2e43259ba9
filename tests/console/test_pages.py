from datetime import timedelta

import pytest
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Replica
from appliance.tenancy.models import APIKey, AuditLog, Tenant, UsageRecord
from appliance.tenancy.services import authenticate_key, create_api_key, create_tenant
from tests.admin_fixtures import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(client, staff):
    client.force_login(staff)
    return client


PAGES = ["/", "/tenants/", "/tenants/new/", "/models/", "/models/register/", "/usage/"]


@pytest.mark.parametrize("url", PAGES)
def test_pages_need_a_staff_login(client, regular_user, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith("/login/")
    client.force_login(regular_user)
    assert client.get(url).status_code == 302


def test_live_json_refuses_anonymous(client):
    assert client.get("/console/live.json").status_code == 403


def test_non_staff_cannot_log_in(client, regular_user, staff):
    response = client.post("/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 200 and "staff account" in response.content.decode()
    response = client.post("/login/", {"username": "admin", "password": PASSWORD})
    assert response.status_code == 302


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_for_staff(console, url, catalog_model):
    Tenant.objects.create(name="acme")
    assert console.get(url).status_code == 200


def test_create_tenant_and_key_shows_plaintext_once(console, staff, catalog_model):
    response = console.post("/tenants/new/", {"name": "acme", "all_models": "", "allowed_models": ["tiny-llama"],
                                              "is_active": "on", "rpm": "30"})
    assert response.status_code == 302 and response.url == "/tenants/acme/"
    tenant = Tenant.objects.get(name="acme")
    assert tenant.rpm == 30 and not tenant.all_models and list(tenant.allowed_models.all()) == [catalog_model]
    created = console.post("/tenants/acme/keys/", {"name": "web", "expires_in_days": "30"})
    assert created.status_code == 200 and "no-store" in created["Cache-Control"]
    key = APIKey.objects.get()
    page = created.content.decode()
    plaintext = page.split('id="new-key">', 1)[1].split("<", 1)[0]
    assert authenticate_key(plaintext).pk == key.pk
    assert key.expires_at > timezone.now() + timedelta(days=29)
    detail = console.get("/tenants/acme/").content.decode()
    assert key.prefix in detail and plaintext not in detail
    assert AuditLog.objects.filter(object_type="tenancy.apikey", actor=staff).exists()


def test_form_errors_are_shown_not_500(console):
    create_tenant("acme")
    duplicate = console.post("/tenants/new/", {"name": "acme", "all_models": "on", "is_active": "on"})
    assert duplicate.status_code == 200 and "already exists" in duplicate.content.decode()
    negative = console.post("/tenants/new/", {"name": "beta", "rpm": "-5", "is_active": "on"})
    assert negative.status_code == 200 and Tenant.objects.count() == 1
    bad_key = console.post("/tenants/acme/keys/", {"expires_in_days": "0"})
    assert bad_key.status_code == 400 and not APIKey.objects.exists()
    assert console.post("/tenants/ghost/keys/", {}).status_code == 404


def test_key_form_only_offers_the_tenants_models(console, catalog_model, other_model):
    create_tenant("acme", models=["tiny-llama"])
    page = console.get("/tenants/acme/").content.decode()
    assert "tiny-llama" in page and "other-model" not in page
    response = console.post("/tenants/acme/keys/", {"allowed_models": ["other-model"]})
    assert response.status_code == 400 and not APIKey.objects.exists()


def test_revoke_from_the_console(console):
    key, plaintext = create_api_key(create_tenant("acme"))
    assert console.get(f"/keys/{key.pk}/revoke/").status_code == 405
    response = console.post(f"/keys/{key.pk}/revoke/")
    assert response.status_code == 302 and authenticate_key(plaintext) is None


def test_register_model_from_the_console(console, tiny_llama, tmp_path):
    response = console.post("/models/register/", {"name": "tiny", "path": str(tiny_llama)})
    assert response.status_code == 302 and response.url == "/models/tiny/"
    page = console.get("/models/tiny/").content.decode()
    assert "LlamaForCausalLM" in page and "v1" in page
    bad = console.post("/models/register/", {"name": "tiny", "path": str(tmp_path)})
    assert bad.status_code == 200 and "no config.json" in bad.content.decode()


def _usage(tenant, model, latencies, ttft=None):
    for latency in latencies:
        UsageRecord.objects.create(tenant=tenant, model_name=model, request_id="r", endpoint="completions",
                                   prompt_tokens=10, completion_tokens=20, latency_ms=latency, ttft_ms=ttft)


def test_live_json_reports_deployments_and_last_hour_usage(console, catalog_model):
    version = catalog_model.versions.get()
    deployment = Deployment.objects.create(name="llama-chat", model_version=version, status="running",
                                           desired_replicas=2, max_replicas=2)
    node = Node.objects.create(name="n1")
    ready = Replica.objects.create(deployment=deployment, node=node, index=0, state="ready", cold_start_s=1.5,
                                   cores=[0])
    starting = Replica.objects.create(deployment=deployment, node=node, index=1, state="starting", cores=[1])
    from appliance.telemetry.models import OccupancySample

    stale = OccupancySample.objects.create(node=node, replica=ready, device="neuron", core=0, utilization_pct=5,
                                           memory_bytes=1)
    OccupancySample.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    OccupancySample.objects.create(node=node, replica=ready, device="neuron", core=0, utilization_pct=10,
                                   memory_bytes=3 << 30)
    OccupancySample.objects.create(node=node, replica=ready, device="neuron", core=0, utilization_pct=40,
                                   memory_bytes=2 << 30)
    OccupancySample.objects.create(node=node, replica=starting, device="neuron", core=1, utilization_pct=20,
                                   memory_bytes=1 << 30)
    tenant = create_tenant("acme")
    _usage(tenant, "llama-chat", [100, 200, 300], ttft=20)
    old = UsageRecord.objects.create(tenant=tenant, model_name="llama-chat", request_id="old", endpoint="x",
                                     prompt_tokens=999, latency_ms=5000)
    UsageRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    data = console.get("/console/live.json").json()
    [row] = data["deployments"]
    assert row["name"] == "llama-chat" and row["model"] == "tiny-llama" and row["status"] == "running"
    assert row["replicas"]["ready"] == 1 and row["replicas"]["total"] == 2 and row["replicas"]["desired"] == 2
    assert row["requests"] == 3 and row["prompt_tokens"] == 30 and row["completion_tokens"] == 60
    assert row["p50_latency_ms"] == 200 and row["p50_ttft_ms"] == 20
    assert len(row["requests_per_minute"]) == 60 and sum(row["requests_per_minute"]) == 3
    assert row["utilization_pct"] == 30 and row["memory_bytes"] == 3 << 30
    minutes = [(i, v) for i, v in enumerate(row["utilization_per_minute"]) if v is not None]
    assert len(row["utilization_per_minute"]) == 60 and len(minutes) == 2
    assert minutes[0][1] == 5 and minutes[1][1] == pytest.approx(70 / 3, abs=0.1)
    assert minutes[1][0] - minutes[0][0] == 10
    assert row["last_cold_start_s"] == 1.5
    assert data["totals"]["requests"] == 3 and data["totals"]["deployments_running"] == 1
    page = console.get("/").content.decode()
    assert "llama-chat" in page and "200.0" in page and "30 % · 3.0\xa0GB" in page and "1.5 s" in page


def test_usage_page_filters_by_tenant(console):
    acme, beta = create_tenant("acme", monthly_tokens=300), create_tenant("beta")
    _usage(acme, "acme-model", [1, 2])
    _usage(beta, "beta-model", [1])
    page = console.get("/usage/", {"tenant": "acme", "window": "1h"}).content.decode()
    assert "acme-model" in page and "beta-model" not in page
    assert "20.0 %" in page
    everything = console.get("/usage/", {"window": "nonsense"}).content.decode()
    assert "acme-model" in everything and "beta-model" in everything


def test_edit_tenant_is_audited(console, staff, catalog_model):
    create_tenant("acme")
    response = console.post("/tenants/acme/edit/", {"name": "acme", "display_name": "Acme Corp", "is_active": "on",
                                                    "allowed_models": ["tiny-llama"], "tpm": "5000"})
    assert response.status_code == 302
    tenant = Tenant.objects.get(name="acme")
    assert tenant.tpm == 5000 and not tenant.all_models and tenant.display_name == "Acme Corp"
    change = AuditLog.objects.get(action="update", object_type="tenancy.tenant")
    assert change.actor == staff
    assert change.changes == {"display_name": ["", "Acme Corp"], "all_models": [True, False], "tpm": [None, 5000],
                              "allowed_models": [[], [catalog_model.pk]]}


def test_cold_start_stays_on_the_pages_after_scale_to_zero(console, catalog_model):
    phases = {"artifact_fetch": 0.0, "process_start": 0.7, "import_runtime": 3.9, "weight_load": 6.5,
              "warm_up": 0.1, "first_ready": 11.2}
    Deployment.objects.create(name="sleepy", model_version=catalog_model.versions.get(), status="scaled-to-zero",
                              desired_replicas=0, min_replicas=0,
                              cold_starts=[{"replica": 0, "at": "2026-01-01T00:00:00+00:00", "total_s": 11.2,
                                            "phases": phases}])
    [row] = console.get("/console/live.json").json()["deployments"]
    assert row["replicas"]["total"] == 0 and row["last_cold_start_s"] == 11.2
    assert row["cold_start"]["phases"] == phases
    page = console.get("/deployments/sleepy/").content.decode()
    assert "11.20 s" in page
    assert "artifact_fetch 0.00 s · process_start 0.70 s · import_runtime 3.90 s · weight_load 6.50 s" in page
    assert console.get("/deployments/sleepy/series.json").json()["cold_starts"][0]["total_s"] == 11.2
