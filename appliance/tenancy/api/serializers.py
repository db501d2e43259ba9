from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from appliance.catalog.models import Model

from ..models import APIKey, AuditLog, Tenant, UsageRecord, UsageRollup

QUOTAS = ["rpm", "tpm", "max_concurrency", "monthly_tokens"]


class ModelNameField(serializers.SlugRelatedField):
    """Models referred to by name."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "name")
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Model.objects.all())
        super().__init__(**kwargs)


class TenantSerializer(serializers.ModelSerializer):
    allowed_models = ModelNameField(many=True, required=False)

    class Meta:
        model = Tenant
        fields = ["id", "name", "display_name", "is_active", "all_models", "allowed_models", *QUOTAS,
                  "max_queue_wait_s", "created_at"]
        read_only_fields = ["created_at"]


class TenantRefField(serializers.SlugRelatedField):
    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "name")
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Tenant.objects.all())
        super().__init__(**kwargs)


class APIKeySerializer(serializers.ModelSerializer):
    """An API key as listed: never its digest or plaintext."""

    tenant = TenantRefField(read_only=True)
    allowed_models = ModelNameField(many=True, required=False)
    is_valid = serializers.SerializerMethodField()

    class Meta:
        model = APIKey
        fields = [
            "id", "tenant", "name", "prefix", "allowed_models", *QUOTAS,
            "created_at", "expires_at", "revoked_at", "last_used_at", "is_valid",
        ]
        read_only_fields = ["prefix", "created_at", "revoked_at", "last_used_at"]

    @extend_schema_field(serializers.BooleanField())
    def get_is_valid(self, key: APIKey) -> bool:
        now = timezone.now()
        return (
            key.revoked_at is None and key.tenant.is_active and (key.expires_at is None or key.expires_at > now)
        )

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value

    def validate_allowed_models(self, value):
        tenant = self.instance.tenant if self.instance else self.initial_data.get("tenant")
        if not isinstance(tenant, Tenant):
            tenant = Tenant.objects.filter(name=tenant).first() if isinstance(tenant, str) else None
        if tenant is not None and not tenant.all_models:
            outside = sorted({m.name for m in value} - set(tenant.allowed_models.values_list("name", flat=True)))
            if outside:
                raise serializers.ValidationError(f"Not allowed for tenant {tenant.name}: {', '.join(outside)}.")
        return value


class APIKeyCreateSerializer(APIKeySerializer):
    """Creating a key: the response carries the plaintext `key`, once."""

    tenant = TenantRefField()
    key = serializers.CharField(read_only=True, help_text="The plaintext key. Shown only in this response.")

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]


class UsageRecordSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="name", read_only=True)
    api_key = serializers.SlugRelatedField(slug_field="prefix", read_only=True, allow_null=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id", "tenant", "api_key", "model_name", "request_id", "endpoint", "prompt_tokens",
            "completion_tokens", "latency_ms", "ttft_ms", "queue_ms", "status_code", "created_at",
        ]


class UsageRollupSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="name", read_only=True)
    api_key = serializers.SlugRelatedField(slug_field="prefix", read_only=True, allow_null=True)

    class Meta:
        model = UsageRollup
        fields = [
            "id", "tenant", "api_key", "model_name", "period_start", "requests", "errors", "prompt_tokens",
            "completion_tokens",
        ]


class AuditLogSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = AuditLog
        fields = ["id", "actor", "action", "object_type", "object_id", "object_repr", "changes", "created_at"]
