"""A tenant's keys and usage never show up under another tenant's filters."""
import pytest

from appliance.tenancy.models import UsageRecord
from appliance.tenancy.services import create_api_key, create_tenant
from appliance.tenancy.usage import rollup_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants():
    acme, beta = create_tenant("acme"), create_tenant("beta")
    ka, _ = create_api_key(acme, name="acme-key")
    kb, _ = create_api_key(beta, name="beta-key")
    for tenant, key, model in ((acme, ka, "acme-model"), (beta, kb, "beta-model")):
        UsageRecord.objects.create(tenant=tenant, api_key=key, model_name=model, request_id=f"req-{tenant.name}",
                                   endpoint="completions", prompt_tokens=3, completion_tokens=4)
    rollup_usage()
    return ka, kb


@pytest.mark.parametrize("url", ["/api/tenancy/api-keys/", "/api/tenancy/usage-records/",
                                 "/api/tenancy/usage-rollups/"])
def test_filter_by_tenant_returns_only_that_tenant(staff_api, two_tenants, url):
    ka, kb = two_tenants
    for tenant, mine, theirs in (("acme", ka, kb), ("beta", kb, ka)):
        results = staff_api.get(url, {"tenant": tenant}).json()["results"]
        assert results and {r["tenant"] for r in results} == {tenant}
        text = str(results)
        assert mine.prefix in text and theirs.prefix not in text
        assert f"{'beta' if tenant == 'acme' else 'acme'}-model" not in text


def test_filter_by_api_key_and_model_does_not_cross_tenants(staff_api, two_tenants):
    ka, kb = two_tenants
    assert staff_api.get("/api/tenancy/usage-records/", {"tenant": "acme", "api_key": kb.prefix}).json()[
        "results"] == []
    assert staff_api.get("/api/tenancy/usage-records/", {"tenant": "acme", "model": "beta-model"}).json()[
        "results"] == []
    assert staff_api.get("/api/tenancy/usage-rollups/", {"tenant": "nobody"}).json()["results"] == []


def test_date_filters(staff_api, two_tenants):
    from django.utils import timezone

    today = timezone.now().date().isoformat()
    assert len(staff_api.get("/api/tenancy/usage-records/", {"date": today}).json()["results"]) == 2
    assert staff_api.get("/api/tenancy/usage-records/", {"date": "2001-01-01"}).json()["results"] == []
    bad = staff_api.get("/api/tenancy/usage-records/", {"date": "yesterday-ish"})
    assert bad.status_code == 400 and "date" in bad.json()
