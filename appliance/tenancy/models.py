"""Tenants, their API keys and quotas, what they used, and who changed what.

Quota fields left empty mean unlimited. A key's own quota narrows its tenant's; both are enforced.
A tenant may call the models in `allowed_models`, or every model when `all_models` is set; a key whose own
`allowed_models` is non-empty narrows that set. Tenants name a model in the API by a Deployment's `name`.
"""
from django.conf import settings
from django.db import models


class QuotaFields(models.Model):
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens (prompt + completion) per minute")
    max_concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight at once")
    monthly_tokens = models.PositiveBigIntegerField(null=True, blank=True, help_text="Token budget per month")

    class Meta:
        abstract = True


class Tenant(QuotaFields):
    class Kind(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        BENCHMARK = "benchmark", "Benchmark (the appliance's own load tests; not billed)"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CUSTOMER, editable=False,
                            help_text="benchmark: usage rows of this tenant's keys are load tests, not billable use")
    display_name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    all_models = models.BooleanField(
        default=False, help_text="May call every model, including ones registered later (ignores allowed_models)"
    )
    allowed_models = models.ManyToManyField(
        "catalog.Model", blank=True, related_name="tenants", help_text="Models this tenant may call"
    )
    max_queue_wait_s = models.FloatField(
        default=0, help_text="At its concurrency limit, a request waits up to this many seconds for a slot (FIFO per "
        "tenant) before a 429; 0 refuses at once"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class APIKey(QuotaFields):
    """An API key: the plaintext is shown once; stored as a lookup prefix plus an HMAC-SHA256 digest."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    allowed_models = models.ManyToManyField(
        "catalog.Model", blank=True, related_name="+", help_text="Empty: every model the tenant may call"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.tenant.name}/{self.prefix}"


class UsageRecord(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage")
    api_key = models.ForeignKey(APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    model_name = models.CharField(max_length=100)
    request_id = models.CharField(max_length=64, db_index=True)
    endpoint = models.CharField(max_length=50)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True)
    queue_ms = models.FloatField(default=0, help_text="Time waited in the tenant's queue for a concurrency slot")
    status_code = models.PositiveSmallIntegerField(default=200)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]


class UsageRollup(models.Model):
    """Usage summed per tenant, key, model and hour."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="rollups")
    api_key = models.ForeignKey(APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=100)
    period_start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "api_key", "model_name", "period_start"], name="unique_usage_rollup"
            )
        ]


class AuditLog(models.Model):
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=20)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
