"""The project's base classes for the admin REST API (staff only), so each app's viewsets are short declarations.

    class TenantViewSet(AdminModelViewSet):
        queryset = Tenant.objects.prefetch_related("allowed_models")
        serializer_class = TenantSerializer
        filterset_fields = ["name", "is_active"]

Writes are atomic and audited (appliance.tenancy.audit); a delete blocked by a protected reference answers 409,
a database constraint 400, never 500. Authentication: DRF token (``Authorization: Token <token>``) or the Django
session; tenants' API keys are not accepted here. Permissions (`StaffPermission`): staff read; staff who are not
viewers (appliance.roles) write. Every operation's error answers are in the published schema (appliance.api_schema).
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, transaction
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from appliance.api_filters import FilterBackend
from appliance.roles import StaffPermission
from appliance.tenancy.audit import diff, record_audit, snapshot


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus: a value the database cannot hold (a date out of its range, a number too large) or a
    model validation error is the caller's mistake, a 400, not a 500."""
    if isinstance(exc, DataError):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid value"
        return Response({"detail": f"A value is out of range: {first_line}"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The project's 404 handler: a URL under /api/ that matches no route (``/api/catalog/models/abc/``) answers in
    the admin API's JSON shape, as the schema says; other paths get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is still referenced."
    default_code = "conflict"


def _takes_text(field: serializers.Field) -> bool:
    return isinstance(field, (serializers.CharField, serializers.SlugRelatedField))


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    if _takes_text(field) and not isinstance(value, str):
        return "Not a string."
    if isinstance(field, serializers.BooleanField) and not isinstance(value, bool):
        return "Not a boolean (true or false)."
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(field, serializers.IntegerField) and not (number and float(value).is_integer()):
        return "Not an integer."
    if isinstance(field, serializers.FloatField) and not number:
        return "Not a number."
    if isinstance(field, serializers.DecimalField):  # the schema says string (COERCE_DECIMAL_TO_STRING) or number
        from rest_framework.settings import api_settings

        as_string = getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
        if as_string and not isinstance(value, str):
            return "Not a decimal string (e.g. \"0.7582\")."
        if not as_string and not number:
            return "Not a number."
    return None


def refuse_coerced_types(serializer: serializers.Serializer, data: Any) -> None:
    """Each field takes the JSON type the schema gives it: DRF would read the number 0 as the text "0" or as false,
    the text "5" as the integer 5, and an object as an empty list."""
    if not isinstance(data, dict):
        return
    errors = {}
    for name, field in serializer.fields.items():
        value = data.get(name)
        if field.read_only or value is None:
            continue
        if problem := _json_type_error(field, value):
            errors[name] = [problem]
        elif isinstance(field, (serializers.ManyRelatedField, serializers.ListField)) and not isinstance(value, list):
            errors[name] = ["Expected a list of items."]
        elif isinstance(field, serializers.ManyRelatedField) and _takes_text(field.child_relation):
            if not all(isinstance(v, str) for v in value):
                errors[name] = ["Every item must be a string."]
    if errors:
        raise ValidationError(errors)


class AdminAPIMixin:
    """Staff-only authentication, permissions, filtering and ordering shared by every admin viewset."""

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [StaffPermission]
    filter_backends = [FilterBackend, SearchFilter, OrderingFilter]
    ordering_fields = "__all__"

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        if "data" in kwargs:
            refuse_coerced_types(serializer, kwargs["data"])
        return serializer


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
