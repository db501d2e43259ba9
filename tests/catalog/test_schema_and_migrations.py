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
def test_schema_endpoint_is_served_to_staff(staff_api, anon_api):
    assert staff_api.get("/api/schema/").status_code == 200


@pytest.mark.django_db
def test_makemigrations_check_is_clean_for_all_apps():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
