"""Input the admin API's schema forbids gets a 400 naming the problem, never a 500 (the cases the fuzz found)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_api_key_with_an_object_for_tenant_is_a_400(staff_api, db):
    response = staff_api.post("/api/tenancy/api-keys/", {"tenant": {}, "allowed_models": []})
    assert response.status_code == 400
    assert "tenant" in response.json()


def test_register_with_a_path_too_long_for_the_filesystem_is_a_400(staff_api):
    response = staff_api.post("/api/catalog/models/register/", {"name": "tiny", "path": "/" + "a" * 900})
    assert response.status_code == 400
    assert "File name too long" in response.json()["path"][0]


def test_register_with_an_unknown_home_directory_is_a_400(staff_api):
    response = staff_api.post("/api/catalog/models/register/", {"name": "tiny", "path": "~nobody-here/x"})
    assert response.status_code == 400 and "path" in response.json()


@pytest.mark.parametrize("bound", ["2000-01-01T00:00:00+23:30", "0001-01-01T00:00:00+05:00",
                                   "9999-12-31T23:59:59-10:00"])
def test_time_filters_take_any_iso_offset(staff_api, bound):
    assert staff_api.get("/api/tenancy/usage-records/", {"since": bound}).status_code == 200


@pytest.mark.parametrize("url,query,param", [
    ("/api/tenancy/api-keys/", {"revoked": "maybe"}, "revoked"),
    ("/api/tenancy/tenants/", {"offset": "abc"}, "offset"),
    ("/api/catalog/model-versions/", {"version": "0.5"}, "version"),
    ("/api/tenancy/usage-records/", {"until": ""}, "until"),
])
def test_query_values_the_schema_forbids_are_refused(staff_api, url, query, param):
    response = staff_api.get(url, query)
    assert response.status_code == 400
    assert param in response.json()


@pytest.mark.parametrize("body,field", [
    ({"name": 0}, "name"), ({"name": "acme", "all_models": 0}, "all_models"),
    ({"name": "acme", "rpm": "5"}, "rpm"), ({"name": "acme", "allowed_models": {}}, "allowed_models"),
])
def test_body_values_of_the_wrong_json_type_are_refused(staff_api, body, field):
    response = staff_api.post("/api/tenancy/tenants/", body)
    assert response.status_code == 400
    assert field in response.json()


def test_unknown_api_url_is_a_json_404(staff_api):
    response = staff_api.get("/api/catalog/models/not-a-number/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_a_form_encoded_body_is_a_415(staff_api):
    response = staff_api.post("/api/tenancy/tenants/", "name=acme", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
