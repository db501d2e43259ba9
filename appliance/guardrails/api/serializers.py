from __future__ import annotations

from rest_framework import serializers

from appliance.catalog.models import Deployment
from appliance.tenancy.models import Tenant

from ..models import GuardrailPolicy
from ..policy import PolicyError, compile_policy


class GuardrailPolicySerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="name", queryset=Tenant.objects.all(), required=False,
                                          allow_null=True)
    deployment = serializers.SlugRelatedField(slug_field="name", queryset=Deployment.objects.all(), required=False,
                                              allow_null=True)
    deny_terms = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=1000)
    pii = serializers.ListField(child=serializers.ChoiceField(choices=["email", "card"]), required=False)

    class Meta:
        model = GuardrailPolicy
        fields = ["id", "tenant", "deployment", "filter", "check_input", "check_output", "deny_terms", "deny_action",
                  "pii", "pii_action", "max_prompt_tokens", "max_tokens", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate(self, attrs: dict) -> dict:
        merged = {f: getattr(self.instance, f) for f in self.Meta.fields if self.instance is not None
                  and f not in ("id", "updated_at")}
        merged.update(attrs)
        if (merged.get("tenant") is None) == (merged.get("deployment") is None):
            raise serializers.ValidationError("A policy belongs to exactly one tenant or one deployment.")
        row = GuardrailPolicy(**{k: v for k, v in merged.items() if k not in ("id",)})
        try:
            compile_policy(row)
        except PolicyError as exc:
            raise serializers.ValidationError({"filter": [str(exc)]}) from None
        return attrs
