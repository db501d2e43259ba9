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


def test_create_tenant_with_models(catalog_model, other_model):
    lines = run("create_tenant", "acme", "--models", "other-model")
    assert allowed_model_names(authenticate_key(lines[-1])) == {"other-model"}


@pytest.mark.parametrize("args, message", [
    (["bad name!"], "name"),
    (["acme", "--models", "ghost"], "ghost"),
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
