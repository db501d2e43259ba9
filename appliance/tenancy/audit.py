"""The audit log of admin changes: who created, changed or deleted which object, and which fields changed.

Used by the admin REST API (appliance.api_base.AuditedModelViewSet), Django admin (appliance.admin_base) and the
console. Secrets (API key digests, passwords) are never written to the log.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models

from .models import AuditLog

SECRET_FIELDS = frozenset({"digest", "plaintext", "password", "key", "secret"})
CREATE, UPDATE, DELETE = "create", "update", "delete"


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple, set)):
        return sorted(_plain(v) for v in value) if isinstance(value, set) else [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def snapshot(obj: models.Model) -> dict[str, Any]:
    """The object's field values (many-to-many as sorted primary keys), without secret fields."""
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.name in SECRET_FIELDS:
            continue
        data[field.name] = _plain(field.value_from_object(obj))
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            data[field.name] = sorted(v.pk for v in getattr(obj, field.name).all())
    return data


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Changed fields as {field: [old, new]}."""
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v and k not in SECRET_FIELDS}


def record_audit(
    actor: AbstractBaseUser | None, action: str, obj: models.Model, changes: dict[str, Any] | None = None
) -> AuditLog:
    """Write one audit row. `changes` is {field: value} for a create/delete, {field: [old, new]} for an update."""
    clean = {k: _plain(v) for k, v in (changes or {}).items() if k not in SECRET_FIELDS}
    return AuditLog.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=f"{obj._meta.app_label}.{obj._meta.model_name}",
        object_id=str(obj.pk),
        object_repr=str(obj)[:300],
        changes=clean,
    )
