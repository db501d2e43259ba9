from django.contrib import admin, messages
from django.utils import timezone

from appliance.admin_base import AuditedModelAdmin

from .models import APIKey, AuditLog, Tenant, UsageRecord, UsageRollup
from .services import generate_key, key_digest, revoke_api_key

QUOTAS = ("rpm", "tpm", "max_concurrency", "monthly_tokens")


@admin.register(Tenant)
class TenantAdmin(AuditedModelAdmin):
    list_display = ("name", "display_name", "is_active", "all_models", *QUOTAS, "max_queue_wait_s", "created_at")
    list_filter = ("is_active", "all_models")
    search_fields = ("name", "display_name")
    filter_horizontal = ("allowed_models",)


@admin.register(APIKey)
class APIKeyAdmin(AuditedModelAdmin):
    """Adding a key shows its plaintext once, in a message; only the prefix and digest are stored."""

    list_display = ("prefix", "tenant", "name", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("tenant", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "name", "tenant__name")
    filter_horizontal = ("allowed_models",)
    actions = ["revoke_selected"]

    def get_fields(self, request, obj=None):
        editable = ["tenant", "name", "expires_at", "allowed_models", *QUOTAS]
        return editable if obj is None else ["prefix", "digest", *editable, "revoked_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("prefix", "digest", "tenant", "revoked_at", "last_used_at")

    def save_model(self, request, obj: APIKey, form, change: bool) -> None:
        if not change:
            prefix, plaintext = generate_key()
            obj.prefix, obj.digest = prefix, key_digest(plaintext)
            messages.warning(request, f"New API key (copy it now, it is not shown again): {plaintext}")
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            revoke_api_key(key, actor=request.user)
        self.message_user(request, f"Revoked at {timezone.now():%Y-%m-%d %H:%M:%S} UTC.")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records, not settings: usage is what tenants are billed for and the audit log is evidence."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "tenant", "api_key", "model_name", "endpoint", "prompt_tokens",
                    "completion_tokens", "latency_ms", "ttft_ms", "status_code")
    list_filter = ("tenant", "model_name", "status_code", "endpoint")
    search_fields = ("request_id", "model_name", "tenant__name")
    date_hierarchy = "created_at"


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = ("period_start", "tenant", "api_key", "model_name", "requests", "errors", "prompt_tokens",
                    "completion_tokens")
    list_filter = ("tenant", "model_name")
    date_hierarchy = "period_start"


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "action", "object_type", "object_repr")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "object_id", "actor__username")
    date_hierarchy = "created_at"
