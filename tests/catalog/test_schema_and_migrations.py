import io

import pytest
from django.core.management import call_command


def test_openapi_schema_generates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    schema = out.getvalue()
    for path in ("/api/tenancy/api-keys/{id}/revoke/", "/api/catalog/models/register/", "/api/tenancy/usage-rollups/"):
        assert f'"{path}"' in schema


@pytest.mark.django_db
def test_schema_and_docs_are_served_to_staff_only(staff_api, anon_api, client, staff):
    assert staff_api.get("/api/schema/").status_code == 200
    assert anon_api.get("/api/schema/").status_code in (401, 403)
    client.force_login(staff)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert "cdn" not in docs.content.decode().lower()
    from django.contrib.staticfiles import finders

    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs.content.decode()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


@pytest.mark.django_db
def test_makemigrations_check_is_clean_for_all_apps():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
