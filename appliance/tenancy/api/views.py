from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.api_base import AdminModelViewSet, AdminReadOnlyViewSet

from ..models import APIKey, AuditLog, Tenant, UsageRecord, UsageRollup
from ..services import QUOTA_FIELDS, create_api_key, revoke_api_key
from . import filtersets, serializers


class TenantViewSet(AdminModelViewSet):
    queryset = Tenant.objects.prefetch_related("allowed_models")
    serializer_class = serializers.TenantSerializer
    filterset_fields = ["name", "is_active", "all_models"]
    search_fields = ["name", "display_name"]


class APIKeyViewSet(AdminModelViewSet):
    """API keys. Creating one returns its plaintext `key` once; it is never shown again. Revoke with `revoke`."""

    queryset = APIKey.objects.select_related("tenant").prefetch_related("allowed_models")
    filterset_class = filtersets.APIKeyFilterSet
    search_fields = ["name", "prefix", "tenant__name"]
    ordering_fields = ["created_at", "expires_at", "revoked_at", "last_used_at", "name"]

    def get_serializer_class(self):
        return serializers.APIKeyCreateSerializer if self.action == "create" else serializers.APIKeySerializer

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        key, plaintext = create_api_key(
            data["tenant"],
            name=data.get("name", ""),
            expires_at=data.get("expires_at"),
            allowed_models=data.get("allowed_models", []),
            actor=self.request.user,
            **{f: data.get(f) for f in QUOTA_FIELDS},
        )
        key.key = plaintext
        serializer.instance = key

    @extend_schema(request=None, responses=serializers.APIKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        key = revoke_api_key(self.get_object(), actor=request.user)
        return Response(serializers.APIKeySerializer(key, context=self.get_serializer_context()).data)


class UsageRecordViewSet(AdminReadOnlyViewSet):
    queryset = UsageRecord.objects.select_related("tenant", "api_key").order_by("-created_at")
    serializer_class = serializers.UsageRecordSerializer
    filterset_class = filtersets.UsageRecordFilterSet
    ordering_fields = ["created_at", "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens"]


class UsageRollupViewSet(AdminReadOnlyViewSet):
    queryset = UsageRollup.objects.select_related("tenant", "api_key").order_by("-period_start", "model_name")
    serializer_class = serializers.UsageRollupSerializer
    filterset_class = filtersets.UsageRollupFilterSet
    ordering_fields = ["period_start", "requests", "prompt_tokens", "completion_tokens"]


class AuditLogViewSet(AdminReadOnlyViewSet):
    queryset = AuditLog.objects.select_related("actor")
    serializer_class = serializers.AuditLogSerializer
    filterset_class = filtersets.AuditLogFilterSet
    ordering_fields = ["created_at"]
