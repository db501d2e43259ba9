"""The playground's own API key: staff try a deployment through the real /v1 API, as a tenant would, but not as a
tenant (usage is not a customer's).

Requests go through the whole gateway path (auth, quotas, guardrails, usage) with a key of the internal tenant
PLAYGROUND_TENANT, created on demand: it may call every model and has no quotas; its usage rows are recorded like
any other and marked internal (not billed) on the usage page. Each playground page gets a fresh key that expires
after KEY_TTL, named after the staff user who opened it (and audited as theirs); the plaintext lives only in that
page. Expired playground keys are deleted after PRUNE_AFTER.
"""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from appliance.tenancy.models import APIKey, Tenant
from appliance.tenancy.services import create_api_key, create_tenant

PLAYGROUND_TENANT = "internal-playground"
INTERNAL_TENANTS = frozenset({PLAYGROUND_TENANT})  # usage of these tenants is the appliance's own, never billed
KEY_TTL = timedelta(hours=2)
PRUNE_AFTER = timedelta(days=7)


def playground_tenant(actor=None) -> Tenant:
    tenant = Tenant.objects.filter(name=PLAYGROUND_TENANT).first()
    if tenant is None:
        tenant = create_tenant(PLAYGROUND_TENANT, display_name="Console playground (internal, not billed)",
                               models=None, actor=actor)
    return tenant


def issue_key(user) -> tuple[APIKey, str]:
    """A new playground key for `user` (a staff User), valid for KEY_TTL; returns (row, plaintext)."""
    tenant = playground_tenant(user)
    now = timezone.now()
    APIKey.objects.filter(tenant=tenant, expires_at__lt=now - PRUNE_AFTER).delete()
    return create_api_key(tenant, name=f"playground:{user.get_username()}"[:100], expires_at=now + KEY_TTL,
                          actor=user)
