from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from appliance.catalog.models import Deployment, ModelVersion
from appliance.tenancy.models import APIKey
from appliance.tenancy.services import (
    allowed_deployments,
    allowed_model_names,
    authenticate_key,
    can_use_deployment,
    create_api_key,
    create_tenant,
    key_digest,
    revoke_api_key,
)

pytestmark = pytest.mark.django_db


def test_plaintext_is_never_stored_and_digest_verifies():
    tenant = create_tenant("acme")
    key, plaintext = create_api_key(tenant, name="ci")
    assert plaintext.startswith(f"sk-{key.prefix}-") and len(plaintext) > 40
    row = APIKey.objects.filter(pk=key.pk).values().get()
    assert all(plaintext not in str(v) for v in row.values())
    assert row["digest"] == key_digest(plaintext) != plaintext
    assert authenticate_key(plaintext).pk == key.pk


def test_wrong_secret_same_prefix_and_malformed_keys_are_rejected():
    tenant = create_tenant("acme")
    key, plaintext = create_api_key(tenant)
    assert authenticate_key(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    for bad in ["", "sk-", "sk-abc", f"sk-{key.prefix}-", "Bearer x", plaintext.replace("sk-", "pk-"), "sk-" * 40]:
        assert authenticate_key(bad) is None


def test_revoked_expired_and_inactive_tenant_keys_are_rejected():
    tenant = create_tenant("acme")
    revoked, p1 = create_api_key(tenant)
    expiring, p2 = create_api_key(tenant, expires_at=timezone.now() + timedelta(hours=1))
    assert authenticate_key(p1) and authenticate_key(p2)
    revoke_api_key(revoked)
    assert authenticate_key(p1) is None
    APIKey.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert authenticate_key(p2) is None
    _, p3 = create_api_key(tenant)
    tenant.is_active = False
    tenant.save()
    assert authenticate_key(p3) is None


def test_expiry_in_the_past_is_refused_at_creation():
    tenant = create_tenant("acme")
    with pytest.raises(ValueError, match="expires_at"):
        create_api_key(tenant, expires_at=timezone.now() - timedelta(minutes=1))


def test_authenticate_is_one_query():
    tenant = create_tenant("acme")
    _, plaintext = create_api_key(tenant)
    with CaptureQueriesContext(connection) as ctx:
        key = authenticate_key(plaintext)
        assert key.tenant.name == "acme"
    assert len(ctx.captured_queries) == 1


@pytest.mark.django_db(transaction=True)
async def test_authenticate_from_async_code():
    tenant = await sync_to_async(create_tenant)("acme")
    _, plaintext = await sync_to_async(create_api_key)(tenant)
    key = await sync_to_async(authenticate_key)(plaintext)
    await sync_to_async(connections.close_all)()
    assert key is not None and key.tenant.name == "acme"


def _deploy(model, name):
    version = ModelVersion.objects.filter(model=model).first()
    return Deployment.objects.create(name=name, model_version=version)


def test_allowed_models_tenant_set_narrowed_by_key(catalog_model, other_model):
    tenant = create_tenant("acme", models=["tiny-llama", "other-model"])
    wide, _ = create_api_key(tenant)
    narrow, _ = create_api_key(tenant, allowed_models=["other-model"])
    assert allowed_model_names(wide) == {"tiny-llama", "other-model"}
    assert allowed_model_names(narrow) == {"other-model"}
    d1, d2 = _deploy(catalog_model, "llama-chat"), _deploy(other_model, "qwen-chat")
    assert [d.name for d in allowed_deployments(narrow)] == ["qwen-chat"]
    assert can_use_deployment(wide, d1) and not can_use_deployment(narrow, d1) and can_use_deployment(narrow, d2)


def test_tenant_without_models_flag_gets_all_models_including_later_ones(catalog_model, other_model):
    everything = create_tenant("acme")
    only_llama = create_tenant("beta", models=["tiny-llama"])
    assert everything.all_models and not only_llama.all_models
    k1, _ = create_api_key(everything)
    k2, _ = create_api_key(only_llama)
    from appliance.catalog.models import Model

    Model.objects.create(name="later-model")
    assert allowed_model_names(k1) == {"tiny-llama", "other-model", "later-model"}
    assert allowed_model_names(k2) == {"tiny-llama"}


def test_unknown_models_are_named_in_the_error(catalog_model):
    with pytest.raises(ValueError, match="nope"):
        create_tenant("acme", models=["tiny-llama", "nope"])
    from appliance.tenancy.models import Tenant

    assert not Tenant.objects.filter(name="acme").exists()
