import json

import pytest
from django.contrib import admin

from appliance.tenancy.models import APIKey, AuditLog, Tenant

pytestmark = pytest.mark.django_db


def test_api_writes_are_audited_with_changes_and_actor(staff_api, staff, catalog_model):
    tenant = staff_api.post("/api/tenancy/tenants/", {"name": "acme", "rpm": 10}, format="json").json()
    staff_api.patch(f"/api/tenancy/tenants/{tenant['id']}/", {"rpm": 20, "display_name": "Acme"}, format="json")
    create = AuditLog.objects.get(action="create", object_type="tenancy.tenant")
    update = AuditLog.objects.get(action="update", object_type="tenancy.tenant")
    assert create.actor == staff and create.changes["rpm"] == 10 and create.object_repr == "acme"
    assert update.changes == {"rpm": [10, 20], "display_name": ["", "Acme"]}


def test_key_audit_rows_never_hold_secrets(staff_api):
    staff_api.post("/api/tenancy/tenants/", {"name": "acme"}, format="json")
    body = staff_api.post("/api/tenancy/api-keys/", {"tenant": "acme", "name": "ci"}, format="json").json()
    staff_api.patch(f"/api/tenancy/api-keys/{body['id']}/", {"name": "renamed"}, format="json")
    staff_api.post(f"/api/tenancy/api-keys/{body['id']}/revoke/")
    digest = APIKey.objects.get(pk=body["id"]).digest
    rows = AuditLog.objects.filter(object_type="tenancy.apikey").order_by("id")
    assert [r.action for r in rows] == ["create", "update", "revoke"]
    assert rows[0].changes["prefix"] == body["prefix"] and rows[1].changes == {"name": ["ci", "renamed"]}
    dumped = json.dumps([r.changes for r in rows])
    assert "digest" not in dumped and digest not in dumped and body["key"] not in dumped


def test_catalog_writes_are_audited(staff_api, catalog_model):
    version = catalog_model.versions.get()
    response = staff_api.post(
        "/api/catalog/deployments/", {"name": "llama-chat", "model_version": version.pk}, format="json"
    )
    assert response.status_code == 201, response.json()
    staff_api.patch(f"/api/catalog/models/{catalog_model.pk}/", {"description": "tiny"}, format="json")
    assert AuditLog.objects.filter(object_type="catalog.deployment", action="create").exists()
    assert AuditLog.objects.get(object_type="catalog.model").changes == {"description": ["", "tiny"]}


def test_django_admin_add_change_delete_are_audited(client, staff):
    client.force_login(staff)
    form = {"name": "acme", "display_name": "", "is_active": "on", "max_queue_wait_s": "0"}
    response = client.post("/admin/tenancy/tenant/add/", form)
    assert response.status_code == 302
    tenant = Tenant.objects.get(name="acme")
    client.post(
        f"/admin/tenancy/tenant/{tenant.pk}/change/", {**form, "display_name": "ACME"}
    )
    client.post(f"/admin/tenancy/tenant/{tenant.pk}/delete/", {"post": "yes"})
    rows = list(AuditLog.objects.order_by("id"))
    assert [r.action for r in rows] == ["create", "update", "delete"]
    assert rows[1].changes == {"display_name": ["", "ACME"]} and all(r.actor == staff for r in rows)


def test_django_admin_key_creation_shows_plaintext_once_and_stores_digest(client, staff):
    client.force_login(staff)
    tenant = Tenant.objects.create(name="acme")
    response = client.post("/admin/tenancy/apikey/add/", {"tenant": tenant.pk, "name": "ops"}, follow=True)
    key = APIKey.objects.get()
    messages = [str(m) for m in response.context["messages"]]
    shown = [m for m in messages if f"sk-{key.prefix}-" in m]
    assert len(shown) == 1
    plaintext = shown[0].rsplit(" ", 1)[-1]
    from appliance.tenancy.services import authenticate_key

    assert authenticate_key(plaintext).pk == key.pk
    page = client.get(f"/admin/tenancy/apikey/{key.pk}/change/").content.decode()
    assert plaintext not in page
    audit = AuditLog.objects.get(object_type="tenancy.apikey")
    assert plaintext not in json.dumps(audit.changes) and key.digest not in json.dumps(audit.changes)


def test_every_tenancy_and_catalog_model_is_in_django_admin():
    from django.apps import apps

    for label in ("tenancy", "catalog"):
        for model in apps.get_app_config(label).get_models():
            assert admin.site.is_registered(model), model


def test_admin_changelists_render(client, staff, catalog_model):
    client.force_login(staff)
    from django.apps import apps

    for label in ("tenancy", "catalog"):
        for model in apps.get_app_config(label).get_models():
            url = f"/admin/{label}/{model._meta.model_name}/"
            assert client.get(url).status_code == 200, url
            assert client.get(url + "add/").status_code in (200, 403), url
