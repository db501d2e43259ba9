"""The project's Django admin base class: every add, change and delete by an admin is written to the audit log."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet

from appliance.tenancy.audit import diff, record_audit, snapshot


class AuditedModelAdmin(admin.ModelAdmin):
    """ModelAdmin whose saves and deletes (one by one or in bulk) are audited with the changed fields."""

    def save_model(self, request, obj: Model, form, change: bool) -> None:
        request._audit_before = snapshot(obj.__class__.objects.get(pk=obj.pk)) if change and obj.pk else None
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        obj = form.instance
        after = snapshot(obj)
        before: dict[str, Any] | None = getattr(request, "_audit_before", None)
        if change:
            changes = diff(before or {}, after)
            if changes:
                record_audit(request.user, "update", obj, changes)
        else:
            record_audit(request.user, "create", obj, after)

    def delete_model(self, request, obj: Model) -> None:
        with transaction.atomic():
            record_audit(request.user, "delete", obj, snapshot(obj))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset: QuerySet) -> None:
        with transaction.atomic():
            for obj in queryset:
                record_audit(request.user, "delete", obj, snapshot(obj))
            super().delete_queryset(request, queryset)
