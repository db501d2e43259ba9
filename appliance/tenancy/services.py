"""Tenants and API keys: create, authenticate, revoke, and which models a key may call.

Key format: ``sk-<prefix>-<secret>``. The prefix (12 hex characters) is a unique, indexed lookup id stored in
``APIKey.prefix``; only ``HMAC-SHA256(settings.API_KEY_HMAC_SECRET, plaintext)`` is stored, in ``APIKey.digest``.
The plaintext exists only in the return value of :func:`create_api_key`.

Models and deployments: tenants name a model in the OpenAI API by a ``Deployment.name``. A key may call a
deployment iff the deployment's ``model_version.model.name`` is in :func:`allowed_model_names` (the tenant's
models, or all models when ``Tenant.all_models`` is set, narrowed by the key's own ``allowed_models`` when that
is non-empty). :func:`allowed_deployments` gives the active deployments a key may call (for ``GET /v1/models``).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from appliance.catalog.models import Deployment, Model

from .audit import record_audit, snapshot
from .models import APIKey, Tenant
from .usage import month_tokens  # noqa: F401  (re-exported: one import path for the gateway)

KEY_SCHEME = "sk"
PREFIX_BYTES = 6
SECRET_BYTES = 32
QUOTA_FIELDS = ("rpm", "tpm", "max_concurrency", "monthly_tokens")


def key_digest(plaintext: str) -> str:
    """HMAC-SHA256 of the whole plaintext key under the appliance's key secret, as hex."""
    secret = settings.API_KEY_HMAC_SECRET.encode()
    return hmac.new(secret, plaintext.encode(), hashlib.sha256).hexdigest()


def parse_key(plaintext: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = plaintext.split("-", 2) if isinstance(plaintext, str) else []
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != PREFIX_BYTES * 2 or not parts[2]:
        return None
    return parts[1]


def resolve_models(names: Iterable[str]) -> list[Model]:
    """Model rows for the given names; ValueError naming the unknown ones."""
    wanted = sorted({n.strip() for n in names if n and n.strip()})
    found = list(Model.objects.filter(name__in=wanted))
    missing = sorted(set(wanted) - {m.name for m in found})
    if missing:
        raise ValueError(f"unknown model(s): {', '.join(missing)}")
    return found


@transaction.atomic
def create_tenant(
    name: str,
    *,
    display_name: str = "",
    models: Iterable[str] | None = None,
    is_active: bool = True,
    max_queue_wait_s: float = 0,
    actor=None,
    **quotas: int | None,
) -> Tenant:
    """Create a tenant. `models=None` lets it call every model, present and future (`all_models`).
    `max_queue_wait_s`: at its concurrency limit, a request waits this long for a slot before a 429."""
    unknown = set(quotas) - set(QUOTA_FIELDS)
    if unknown:
        raise TypeError(f"unknown quota field(s): {', '.join(sorted(unknown))}")
    for field, value in quotas.items():
        if value is not None and value < 0:
            raise ValueError(f"{field} must be a non-negative integer")
    if max_queue_wait_s < 0:
        raise ValueError("max_queue_wait_s must be a non-negative number of seconds")
    if Tenant.objects.filter(name=name).exists():
        raise ValueError(f"a tenant named {name!r} already exists")
    model_rows = resolve_models(models) if models is not None else []
    tenant = Tenant(
        name=name, display_name=display_name, is_active=is_active, all_models=models is None,
        max_queue_wait_s=max_queue_wait_s, **quotas
    )
    tenant.full_clean()
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError:
        raise ValueError(f"a tenant named {name!r} already exists") from None
    tenant.allowed_models.set(model_rows)
    record_audit(actor, "create", tenant, snapshot(tenant))
    return tenant


def generate_key() -> tuple[str, str]:
    """A new (prefix, plaintext) pair."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    return prefix, f"{KEY_SCHEME}-{prefix}-{secrets.token_urlsafe(SECRET_BYTES)}"


def create_api_key(
    tenant: Tenant,
    *,
    name: str = "",
    expires_at: datetime | None = None,
    allowed_models: Iterable[Model | str] | None = None,
    actor=None,
    **quotas: int | None,
) -> tuple[APIKey, str]:
    """Create a key for `tenant`; returns (row, plaintext). The plaintext is not stored and cannot be recovered."""
    unknown = set(quotas) - set(QUOTA_FIELDS)
    if unknown:
        raise TypeError(f"unknown quota field(s): {', '.join(sorted(unknown))}")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("expires_at must be in the future")
    models_ = [m for m in (allowed_models or []) if isinstance(m, Model)]
    models_ += resolve_models(m for m in (allowed_models or []) if isinstance(m, str))
    for _ in range(5):
        prefix, plaintext = generate_key()
        try:
            with transaction.atomic():
                key = APIKey.objects.create(
                    tenant=tenant, name=name, prefix=prefix, digest=key_digest(plaintext),
                    expires_at=expires_at, **quotas,
                )
                key.allowed_models.set(models_)
                record_audit(actor, "create", key, snapshot(key))
            return key, plaintext
        except IntegrityError:
            if APIKey.objects.filter(prefix=prefix).exists():
                continue
            raise
    raise RuntimeError("could not allocate a unique API key prefix")


def authenticate_key(plaintext: str) -> APIKey | None:
    """The active key for `plaintext` (tenant preloaded), or None when unknown, revoked, expired or inactive.

    One indexed query; synchronous (from async code: ``await sync_to_async(authenticate_key)(token)``).
    """
    prefix = parse_key(plaintext)
    if prefix is None:
        return None
    key = APIKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.digest, key_digest(plaintext)):
        return None
    if key.revoked_at is not None or not key.tenant.is_active:
        return None
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return None
    return key


def revoke_api_key(key: APIKey, *, actor=None) -> APIKey:
    """Revoke a key (idempotent: revoking twice keeps the first time)."""
    with transaction.atomic():
        key = APIKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            record_audit(actor, "revoke", key, {"revoked_at": [None, key.revoked_at]})
    return key


def allowed_model_names(key: APIKey) -> set[str]:
    """Names of the catalog Models this key may call: the tenant's set, narrowed by the key's own if it has one."""
    tenant = key.tenant
    tenant_names = (
        set(Model.objects.values_list("name", flat=True))
        if tenant.all_models
        else set(tenant.allowed_models.values_list("name", flat=True))
    )
    key_names = set(key.allowed_models.values_list("name", flat=True))
    return tenant_names & key_names if key_names else tenant_names


def allowed_deployments(key: APIKey) -> QuerySet[Deployment]:
    """Active deployments this key may call, by model permission."""
    names = allowed_model_names(key)
    return (
        Deployment.objects.filter(is_active=True, model_version__model__name__in=names)
        .select_related("model_version__model")
        .order_by("name")
    )


def can_use_deployment(key: APIKey, deployment: Deployment) -> bool:
    """Whether `key` may call `deployment` (the gateway answers 404 otherwise, never revealing it exists)."""
    return deployment.model_version.model.name in allowed_model_names(key)


def tenant_keys(tenant: Tenant, *, include_revoked: bool = True) -> QuerySet[APIKey]:
    """A tenant's keys, newest first."""
    qs = tenant.api_keys.all().order_by("-created_at")
    return qs if include_revoked else qs.filter(Q(revoked_at__isnull=True))
