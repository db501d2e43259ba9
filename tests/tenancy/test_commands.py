import io

import pytest
from django.core.management import CommandError, call_command

from appliance.tenancy.models import Tenant
from appliance.tenancy.services import allowed_model_names, authenticate_key

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().rstrip("\n").splitlines()


def test_create_tenant_prints_the_key_alone_on_the_last_line(catalog_model):
    lines = run("create_tenant", "acme", "--rpm", "10", "--tpm", "1000", "--max-concurrency", "2",
                "--monthly-tokens", "100000")
    key = authenticate_key(lines[-1])
    assert key is not None and lines[-1].strip() == lines[-1]
    tenant = Tenant.objects.get(name="acme")
    assert (tenant.rpm, tenant.tpm, tenant.max_concurrency, tenant.monthly_tokens) == (10, 1000, 2, 100000)
    assert tenant.all_models and allowed_model_names(key) == {"tiny-llama"}


def test_create_tenant_max_queue_wait_sets_how_long_requests_wait_for_a_slot(catalog_model):
    lines = run("create_tenant", "acme", "--max-concurrency", "2", "--max-queue-wait", "1.5")
    tenant = Tenant.objects.get(name="acme")
    assert (tenant.max_concurrency, tenant.max_queue_wait_s) == (2, 1.5)
    assert "waits up to 1.5s for a slot" in lines[0]
    assert Tenant.objects.create(name="plain").max_queue_wait_s == 0  # default: a 429 at once, as before


def test_create_tenant_with_models(catalog_model, other_model):
    lines = run("create_tenant", "acme", "--models", "other-model")
    assert allowed_model_names(authenticate_key(lines[-1])) == {"other-model"}


@pytest.mark.parametrize("args, message", [
    (["bad name!"], "name"),
    (["acme", "--models", "ghost"], "ghost"),
    (["acme", "--max-queue-wait", "-1"], "max-queue-wait"),
])
def test_create_tenant_errors_are_clear(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_tenant", *args)
    assert not Tenant.objects.exists()


def test_create_tenant_refuses_a_duplicate():
    run("create_tenant", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme")


def test_create_admin_makes_a_staff_user_and_token(django_user_model):
    lines = run("create_admin", "root", "--password", "s3cret-pass", "--token")
    user = django_user_model.objects.get(username="root")
    assert user.is_staff and user.is_superuser and user.check_password("s3cret-pass")
    from rest_framework.authtoken.models import Token

    assert Token.objects.get(user=user).key == lines[-1]
