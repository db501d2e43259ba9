from django.contrib import admin

from appliance.admin_base import AuditedModelAdmin

from .models import GuardrailPolicy


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(AuditedModelAdmin):
    list_display = ("__str__", "filter", "check_input", "check_output", "max_prompt_tokens", "max_tokens", "updated_at")
