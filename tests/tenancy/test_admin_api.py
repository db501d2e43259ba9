import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from appliance.tenancy.models import APIKey, AuditLog, Tenant
from appliance.tenancy.services import authenticate_key, create_api_key, create_tenant

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    "/api/tenancy/tenants/", "/api/tenancy/api-keys/", "/api/tenancy/usage-records/",
    "/api/tenancy/usage-rollups/", "/api/tenancy/audit-log/", "/api/catalog/models/",
    "/api/catalog/model-versions/", "/api/catalog/artifacts/", "/api/catalog/nodes/", "/api/catalog/pools/",
    "/api/catalog/deployments/", "/api/catalog/replicas/",
]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_is_refused_with_401(anon_api, url):
    response = anon_api.get(url)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("url", ENDPOINTS)
def test_non_staff_user_is_forbidden(regular_user, url):
    client = APIClient()
    client.force_authenticate(regular_user)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", ENDPOINTS)
def test_staff_can_list(staff_api, url):
    response = staff_api.get(url)
    assert response.status_code == 200
    assert "results" in response.json()


def test_staff_token_and_session_auth_work(staff, client):
    token = Token.objects.create(user=staff)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/tenancy/tenants/").status_code == 200
    client.login(username="admin", password="correct-horse-battery")
    assert client.get("/api/tenancy/tenants/").status_code == 200


def test_session_writes_need_csrf(staff):
    api = APIClient(enforce_csrf_checks=True)
    api.login(username="admin", password="correct-horse-battery")
    assert api.post("/api/tenancy/tenants/", {"name": "acme"}, format="json").status_code == 403
    assert not Tenant.objects.exists()


def test_tenant_api_key_is_not_admin_auth(db):
    tenant = create_tenant("acme")
    _, plaintext = create_api_key(tenant)
    for header in (f"Bearer {plaintext}", f"Token {plaintext}"):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=header)
        assert api.get("/api/tenancy/api-keys/").status_code in (401, 403)


def test_key_plaintext_only_in_create_response(staff_api):
    staff_api.post("/api/tenancy/tenants/", {"name": "acme"}, format="json")
    created = staff_api.post("/api/tenancy/api-keys/", {"tenant": "acme", "name": "ci", "rpm": 5}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    plaintext = body["key"]
    assert plaintext.startswith(f"sk-{body['prefix']}-") and "digest" not in body
    assert authenticate_key(plaintext).rpm == 5
    listing = staff_api.get("/api/tenancy/api-keys/").content.decode()
    detail = staff_api.get(f"/api/tenancy/api-keys/{body['id']}/").content.decode()
    digest = APIKey.objects.get(pk=body["id"]).digest
    for text in (listing, detail):
        assert plaintext not in text and digest not in text and '"key"' not in text
        assert body["prefix"] in text


def test_revoke_action_disables_the_key(staff_api):
    tenant = create_tenant("acme")
    key, plaintext = create_api_key(tenant)
    response = staff_api.post(f"/api/tenancy/api-keys/{key.pk}/revoke/")
    assert response.status_code == 200
    assert response.json()["revoked_at"] and response.json()["is_valid"] is False
    assert authenticate_key(plaintext) is None


def test_validation_errors_are_400_with_field_messages(staff_api, catalog_model):
    staff_api.post("/api/tenancy/tenants/", {"name": "acme", "allowed_models": ["tiny-llama"]}, format="json")
    cases = [
        ("/api/tenancy/tenants/", {"name": "not a slug!"}, "name"),
        ("/api/tenancy/tenants/", {"name": "acme"}, "name"),
        ("/api/tenancy/tenants/", {"name": "x", "rpm": -1}, "rpm"),
        ("/api/tenancy/tenants/", {"name": "y", "allowed_models": ["nope"]}, "allowed_models"),
        ("/api/tenancy/api-keys/", {"tenant": "ghost"}, "tenant"),
        ("/api/tenancy/api-keys/", {"tenant": "acme", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ("/api/tenancy/api-keys/", {"tenant": "acme", "expires_at": "tomorrow"}, "expires_at"),
    ]
    for url, payload, field in cases:
        response = staff_api.post(url, payload, format="json")
        assert response.status_code == 400, (payload, response.content)
        assert field in response.json(), response.json()
    assert Tenant.objects.count() == 1 and APIKey.objects.count() == 0


def test_key_models_must_be_within_the_tenant_models(staff_api, catalog_model, other_model):
    staff_api.post("/api/tenancy/tenants/", {"name": "acme", "allowed_models": ["tiny-llama"]}, format="json")
    bad = staff_api.post(
        "/api/tenancy/api-keys/", {"tenant": "acme", "allowed_models": ["other-model"]}, format="json"
    )
    assert bad.status_code == 400 and "allowed_models" in bad.json()
    good = staff_api.post(
        "/api/tenancy/api-keys/", {"tenant": "acme", "allowed_models": ["tiny-llama"]}, format="json"
    )
    assert good.status_code == 201 and good.json()["allowed_models"] == ["tiny-llama"]


def test_tenant_update_and_delete(staff_api):
    tenant_id = staff_api.post("/api/tenancy/tenants/", {"name": "acme"}, format="json").json()["id"]
    response = staff_api.patch(f"/api/tenancy/tenants/{tenant_id}/", {"rpm": 60}, format="json")
    assert response.status_code == 200 and response.json()["rpm"] == 60
    assert staff_api.delete(f"/api/tenancy/tenants/{tenant_id}/").status_code == 204
    assert not Tenant.objects.exists()
    assert list(AuditLog.objects.order_by("id").values_list("action", flat=True)) == ["create", "update", "delete"]


BAD_BODIES = [
    "not json", "[]", "null", '{"name": null}', '{"name": 5}', '{"name": ["a"]}', '{"rpm": "many"}',
    '{"rpm": 1e30}', '{"tenant": {"x": 1}}', '{"allowed_models": "tiny-llama"}', '{"model_version": "abc"}',
    '{"engine_args": "x"}', '{"name": "' + "x" * 500 + '"}', '{"expires_at": 12}', '{"node": 3.5}',
]
WRITABLE = ["/api/tenancy/tenants/", "/api/tenancy/api-keys/", "/api/catalog/models/",
            "/api/catalog/model-versions/", "/api/catalog/nodes/", "/api/catalog/pools/",
            "/api/catalog/deployments/", "/api/catalog/models/register/"]


@pytest.mark.parametrize("url", WRITABLE)
def test_garbage_input_is_never_a_500(staff_api, catalog_model, url):
    create_tenant("acme")
    for body in BAD_BODIES:
        response = staff_api.post(url, body, content_type="application/json")
        assert response.status_code < 500, (body, response.status_code, response.content[:300])
    detail = url if url.endswith("register/") else None
    if detail is None:
        listing = staff_api.get(url).json()["results"]
        if listing:
            item = f"{url}{listing[0]['id']}/"
            for body in BAD_BODIES[3:]:
                response = staff_api.patch(item, body, content_type="application/json")
                assert response.status_code < 500, (item, body, response.content[:300])


@pytest.mark.parametrize("query", [{"is_active": "maybe"}, {"ordering": "nonexistent"}, {"limit": "x"},
                                   {"offset": "-1"}, {"search": "\x00"}])
def test_odd_query_parameters_are_not_500(staff_api, query):
    create_tenant("acme")
    response = staff_api.get("/api/tenancy/tenants/", query)
    assert response.status_code < 500


def test_missing_objects_are_404(staff_api):
    assert staff_api.get("/api/tenancy/tenants/999999/").status_code == 404
    assert staff_api.post("/api/tenancy/api-keys/999999/revoke/").status_code == 404
    assert staff_api.get("/api/tenancy/tenants/abc/").status_code == 404


def test_key_model_change_is_audited_and_bounded_by_tenant(staff_api, catalog_model, other_model):
    tenant = create_tenant("acme", models=["tiny-llama"])
    key, _ = create_api_key(tenant)
    bad = staff_api.patch(f"/api/tenancy/api-keys/{key.pk}/", {"allowed_models": ["other-model"]}, format="json")
    assert bad.status_code == 400
    ok = staff_api.patch(f"/api/tenancy/api-keys/{key.pk}/", {"allowed_models": ["tiny-llama"]}, format="json")
    assert ok.status_code == 200
    change = AuditLog.objects.get(action="update", object_type="tenancy.apikey")
    assert change.changes == {"allowed_models": [[], [catalog_model.pk]]}
    past = staff_api.patch(f"/api/tenancy/api-keys/{key.pk}/", {"expires_at": "2000-01-01T00:00:00Z"},
                           format="json")
    assert past.status_code == 400 and "expires_at" in past.json()
