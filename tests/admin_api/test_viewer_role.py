"""The read-only staff role: a viewer sees everything and changes nothing, in the admin API, the console and the
Django admin. The API's operations are enumerated from the routers (drf-spectacular's endpoint list), so a route added
later is covered without editing this file."""
from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from appliance.catalog.models import Deployment, Model, Node, Pool
from appliance.roles import is_viewer
from appliance.tenancy.models import APIKey, AuditLog, Tenant
from tests.admin_api.seed import seed_one_of_everything
from tests.admin_fixtures import PASSWORD

pytestmark = pytest.mark.django_db

OPERATIONS = sorted(
    (path, method.upper())
    for path, item in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
    for method in item if method in ("get", "post", "put", "patch", "delete")
)
READS = [(p, m) for p, m in OPERATIONS if m == "GET"]
WRITES = [(p, m) for p, m in OPERATIONS if m != "GET"]


@pytest.fixture
def viewer(django_user_model):
    call_command("create_admin", "vera", "--password", PASSWORD, "--viewer", stdout=io.StringIO())
    return django_user_model.objects.get(username="vera")


@pytest.fixture
def world(staff):
    seed_one_of_everything(staff)


@pytest.fixture
def viewer_api(viewer) -> APIClient:
    client = APIClient()
    client.force_authenticate(viewer)
    return client


def concrete(api: APIClient, path: str) -> str:
    """The path with {id} replaced by the id of the first object its list shows."""
    if "{id}" not in path:
        return path
    listing = api.get(path.split("{id}")[0])
    assert listing.status_code == 200, path
    results = listing.json()["results"]
    assert results, f"nothing seeded for {path}"
    return path.replace("{id}", str(results[0]["id"]))


def state() -> tuple:
    return (AuditLog.objects.count(), Tenant.objects.count(), APIKey.objects.filter(revoked_at=None).count(),
            Model.objects.count(), Deployment.objects.count(), Node.objects.count(), Pool.objects.count())


def test_every_operation_is_enumerated():
    assert len(READS) >= 25 and len(WRITES) >= 30
    assert ("/api/tenancy/api-keys/{id}/revoke/", "POST") in WRITES


def test_create_admin_viewer_makes_a_read_only_staff_user(viewer, django_user_model):
    assert viewer.is_staff and not viewer.is_superuser and is_viewer(viewer)
    assert viewer.check_password(PASSWORD)
    call_command("create_admin", "vera", "--password", PASSWORD, stdout=io.StringIO())
    promoted = django_user_model.objects.get(username="vera")
    assert promoted.is_superuser and not is_viewer(promoted)


@pytest.mark.parametrize("path,method", READS, ids=[f"{m} {p}" for p, m in READS])
def test_viewer_reads_every_list_and_detail(viewer_api, world, path, method):
    response = viewer_api.get(concrete(viewer_api, path))
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("path,method", WRITES, ids=[f"{m} {p}" for p, m in WRITES])
def test_viewer_is_refused_every_write(viewer_api, staff_api, world, path, method):
    url = concrete(staff_api, path)
    before = state()
    response = getattr(viewer_api, method.lower())(url, {"name": "changed", "tenant": "acme"})
    assert response.status_code == 403, response.content[:300]
    assert "read-only" in response.json()["detail"]
    assert state() == before


def test_admin_may_still_write(staff_api, world):
    key = APIKey.objects.get()
    assert staff_api.post(f"/api/tenancy/api-keys/{key.pk}/revoke/").status_code == 200


def test_non_staff_writes_are_refused_as_not_staff(regular_user):
    client = APIClient()
    client.force_authenticate(regular_user)
    response = client.post("/api/tenancy/tenants/", {"name": "x"})
    assert response.status_code == 403 and "read-only" not in response.json()["detail"]


CONSOLE_PAGES = ["/", "/tenants/", "/tenants/acme/", "/models/", "/models/tiny-llama/", "/usage/", "/compile/",
                 "/deployments/", "/deployments/tiny-llama/", "/nodes/"]
# Links to the pages that change things, and the forms that POST (the logout form is `<form class="logout" ...`).
MUTATING = re.compile(r'href="[^"]*/(new|edit|register)/[^"]*"|/revoke/"|/keys/"|compile/\?version='
                      r'|<form method="post"')


@pytest.fixture
def viewer_console(client, viewer):
    client.login(username="vera", password=PASSWORD)
    return client


@pytest.mark.parametrize("url", CONSOLE_PAGES)
def test_viewer_sees_console_pages_without_mutating_buttons(viewer_console, world, url):
    response = viewer_console.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert not MUTATING.search(html), MUTATING.search(html).group(0)
    assert "(read-only)" in html


def test_admin_sees_the_mutating_buttons(client, staff, world):
    client.login(username="admin", password=PASSWORD)
    html = client.get("/tenants/acme/").content.decode()
    assert len(MUTATING.findall(html)) >= 3  # edit, revoke, new key


@pytest.mark.parametrize("url,form", [
    ("/tenants/new/", {"name": "evil", "display_name": "x", "all_models": "on", "is_active": "on"}),
    ("/tenants/acme/edit/", {"name": "acme", "display_name": "changed", "all_models": "on"}),
    ("/tenants/acme/keys/", {"name": "evil"}),
    ("/keys/{key}/revoke/", {}),
    ("/models/register/", {"name": "evil", "path": "/tmp"}),
    ("/deployments/new/", {"model": "tiny-llama", "device": "cpu"}),
    ("/compile/", {"model_version": "1", "target": "cpu"}),
])
def test_viewer_console_posts_are_refused(viewer_console, world, url, form):
    url = url.replace("{key}", str(APIKey.objects.get().pk))
    before = state()
    assert viewer_console.post(url, form).status_code == 403
    assert state() == before


@pytest.mark.parametrize("url", ["/tenants/new/", "/tenants/acme/edit/", "/models/register/", "/deployments/new/"])
def test_viewer_gets_403_on_pages_that_only_change_things(viewer_console, url):
    assert viewer_console.get(url).status_code == 403


def test_viewer_django_admin_is_read_only(viewer_console, world):
    assert viewer_console.get("/admin/tenancy/tenant/").status_code == 200
    assert viewer_console.get("/admin/tenancy/tenant/add/").status_code == 403
    tenant = Tenant.objects.get()
    assert viewer_console.post(f"/admin/tenancy/tenant/{tenant.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Tenant.objects.filter(pk=tenant.pk).exists()
