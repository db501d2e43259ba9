from django.apps import AppConfig


class GuardrailsConfig(AppConfig):
    name = "appliance.guardrails"
    label = "guardrails"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .models import GuardrailPolicy

        # a policy is cached with its tenant's callers and its deployment's route: a change reaches every gateway
        post_save.connect(_announce, sender=GuardrailPolicy, dispatch_uid="guardrail-policy-save")
        post_delete.connect(_announce, sender=GuardrailPolicy, dispatch_uid="guardrail-policy-delete")


def _announce(sender=None, **kwargs) -> None:
    from appliance.gateway.invalidation import announce_on_commit

    announce_on_commit(sender=sender)  # created or not: a new policy changes a caller already cached
