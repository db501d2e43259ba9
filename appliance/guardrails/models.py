"""Guardrail policies: a content filter on a tenant's or a deployment's input and output, and per-tenant caps.

A policy belongs to one tenant or one deployment. A request is checked by its tenant's policy and its deployment's
policy, when they exist; a request with neither does no guardrail work at all.
"""
from django.core.exceptions import ValidationError
from django.db import models

BLOCK, REDACT = "block", "redact"
PII_KINDS = ("email", "card")


class GuardrailPolicy(models.Model):
    class Action(models.TextChoices):
        BLOCK = BLOCK, "Block"
        REDACT = REDACT, "Redact"

    tenant = models.OneToOneField("tenancy.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="guardrail_policy")
    deployment = models.OneToOneField("catalog.Deployment", null=True, blank=True, on_delete=models.CASCADE,
                                      related_name="guardrail_policy")
    filter = models.CharField(
        max_length=200, blank=True,
        help_text="Content filter: empty for the built-in one (deny list and PII below), a dotted path "
                  "(package.module.factory) or the name of an `appliance.content_filters` entry point")
    check_input = models.BooleanField(default=True, help_text="Filter prompts and messages")
    check_output = models.BooleanField(default=True, help_text="Filter what the model writes")
    deny_terms = models.JSONField(default=list, blank=True, help_text="Words or phrases, matched case-insensitively")
    deny_action = models.CharField(max_length=10, choices=Action.choices, default=BLOCK)
    pii = models.JSONField(default=list, blank=True, help_text=f"PII kinds to catch: {', '.join(PII_KINDS)}")
    pii_action = models.CharField(max_length=10, choices=Action.choices, default=REDACT)
    max_prompt_tokens = models.PositiveIntegerField(null=True, blank=True,
                                                    help_text="Longest prompt accepted, in tokens")
    max_tokens = models.PositiveIntegerField(null=True, blank=True,
                                             help_text="Largest max_tokens accepted (an unset max_tokens gets this)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "guardrail policies"
        constraints = [models.CheckConstraint(
            condition=models.Q(tenant__isnull=False, deployment__isnull=True)
            | models.Q(tenant__isnull=True, deployment__isnull=False),
            name="guardrail_policy_one_owner")]

    def __str__(self) -> str:
        return f"policy of {'tenant ' + str(self.tenant) if self.tenant_id else 'deployment ' + str(self.deployment)}"

    def clean(self) -> None:
        from .policy import PolicyError, compile_policy

        if (self.tenant_id is None) == (self.deployment_id is None):
            raise ValidationError("A policy belongs to exactly one tenant or one deployment.")
        try:
            compile_policy(self)
        except PolicyError as exc:
            raise ValidationError(str(exc)) from None
