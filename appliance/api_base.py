"""The project's base classes for the admin REST API (staff only), so each app's viewsets are short declarations.

    class TenantViewSet(AdminModelViewSet):
        queryset = Tenant.objects.prefetch_related("allowed_models")
        serializer_class = TenantSerializer
        filterset_fields = ["name", "is_active"]

Writes are atomic and audited (appliance.tenancy.audit); a delete blocked by a protected reference answers 409,
a database constraint 400, never 500. Authentication: DRF token (``Authorization: Token <token>``) or the Django
session; tenants' API keys are not accepted here.
"""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.permissions import IsAdminUser

from appliance.tenancy.audit import diff, record_audit, snapshot


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is still referenced."
    default_code = "conflict"


class AdminAPIMixin:
    """Staff-only authentication, permissions, filtering and ordering shared by every admin viewset."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]
    filter_backends = [DjangoFilterBackend, SearchFilter, OrderingFilter]
    ordering_fields = "__all__"


class AuditedWritesMixin:
    """Atomic, audited create/update/delete. Override `perform_*` and call `audit(...)` for custom writes."""

    def audit(self, action: str, obj: Any, changes: dict[str, Any]) -> None:
        record_audit(self.request.user, action, obj, changes)

    def perform_create(self, serializer) -> None:
        obj = serializer.save()
        self.audit("create", obj, snapshot(obj))

    def perform_update(self, serializer) -> None:
        before = snapshot(serializer.instance)
        obj = serializer.save()
        changes = diff(before, snapshot(obj))
        if changes:
            self.audit("update", obj, changes)

    def perform_destroy(self, instance) -> None:
        self.audit("delete", instance, snapshot(instance))
        try:
            with transaction.atomic():
                instance.delete()
        except ProtectedError as exc:
            names = sorted({str(o) for o in exc.protected_objects})[:5]
            raise Conflict(f"Cannot delete {instance}: still used by {', '.join(names)}.") from None

    def create(self, request, *args, **kwargs):
        return self._atomic(super().create, request, *args, **kwargs)

    def update(self, request, *args, **kwargs):
        return self._atomic(super().update, request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        return self._atomic(super().destroy, request, *args, **kwargs)

    def _atomic(self, method, *args, **kwargs):
        try:
            with transaction.atomic():
                return method(*args, **kwargs)
        except IntegrityError as exc:
            raise ValidationError({"non_field_errors": [f"Conflicts with existing data: {exc.__cause__ or exc}"]})


class AdminModelViewSet(AdminAPIMixin, AuditedWritesMixin, viewsets.ModelViewSet):
    """Full CRUD for staff, every write audited."""


class AdminCreateReadDeleteViewSet(
    AdminAPIMixin,
    AuditedWritesMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Create, read and delete, without update (e.g. objects whose secrets exist only at creation)."""


class AdminReadOnlyViewSet(AdminAPIMixin, viewsets.ReadOnlyModelViewSet):
    """List and retrieve only (usage, audit log, state reported by agents)."""
