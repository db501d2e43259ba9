"""Console forms. Writes go through the tenancy and catalog services, so they are validated and audited the same
way as the admin API and the management commands."""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.utils import timezone

from appliance.catalog.models import Model
from appliance.tenancy.models import Tenant

QUOTA_HELP = "Empty: unlimited"


class StaffLoginForm(AdminAuthenticationForm):
    """Log in; only active staff users are accepted."""


def quota_field(label: str) -> forms.IntegerField:
    return forms.IntegerField(label=label, required=False, min_value=0, help_text=QUOTA_HELP)


class TenantForm(forms.ModelForm):
    allowed_models = forms.ModelMultipleChoiceField(
        queryset=Model.objects.all(), required=False, widget=forms.CheckboxSelectMultiple,
        to_field_name="name", help_text="Ignored when 'all models' is ticked",
    )

    class Meta:
        model = Tenant
        fields = ["name", "display_name", "is_active", "all_models", "allowed_models",
                  "rpm", "tpm", "max_concurrency", "monthly_tokens"]
        labels = {"rpm": "Requests / minute", "tpm": "Tokens / minute", "max_concurrency": "Max concurrent",
                  "monthly_tokens": "Tokens / month", "all_models": "All models (including future ones)"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.fields["all_models"].initial = True
            self.fields["is_active"].initial = True
        for name in ("rpm", "tpm", "max_concurrency", "monthly_tokens"):
            self.fields[name].help_text = QUOTA_HELP


class APIKeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, required=False,
                                         help_text="Empty: never expires")
    allowed_models = forms.ModelMultipleChoiceField(
        queryset=Model.objects.none(), required=False, widget=forms.CheckboxSelectMultiple, to_field_name="name",
        help_text="None ticked: every model the tenant may call",
    )
    rpm = quota_field("Requests / minute")
    tpm = quota_field("Tokens / minute")
    max_concurrency = quota_field("Max concurrent")
    monthly_tokens = quota_field("Tokens / month")

    def __init__(self, tenant: Tenant, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.fields["allowed_models"].queryset = (
            Model.objects.all() if tenant.all_models else tenant.allowed_models.all()
        )

    def expires_at(self):
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class RegisterModelForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits, '-' and '_'")
    path = forms.CharField(
        max_length=1000, label="Checkpoint directory",
        help_text="A Hugging Face-format directory on this appliance (config.json, weights, tokenizer)",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
