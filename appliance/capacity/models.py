"""Benchmark runs and instance prices.

A BenchmarkRun's row is the source of truth for its job (status, stage, percent, log) and holds its inputs and its
results. `results` is plain JSON, read by the console's plots and written by the CLI's --json:

    {"run": id,
     "config": {"deployment", "replicas", "cores_per_replica", "node_cores", "instance_type", "hourly_usd",
                "hourly_cost_usd", "profile", "slo": {"ttft_s", "itl_s"}},
     "levels": [{"concurrency" | "rate", "arrival", "requests", "succeeded", "errors", "errors_rate_limited",
                 "errors_failed", "stopped_early", "duration_s", "ttft_p50/p90/p99", "itl_p50/p90/p99",
                 "e2e_p50/p90/p99", "input_tokens", "output_tokens", "output_tok_s", "requests_per_s",
                 "mean_in_flight", "goodput", "goodput_rps", "mean_batch_size", "kv_use", "core_utilization",
                 "cost_per_million_output_tokens"}, ...],
     "recommendation": {see appliance.capacity.recommend.recommend}}

Times are seconds; kv_use and core_utilization are fractions 0..1 (None where the replica did not say).
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class InstancePrice(models.Model):
    """Hourly price of an instance type. Seeded with AWS on-demand list prices (us-east-1) to edit: set your region's,
    reserved or savings-plan rates here or through the admin API."""

    instance_type = models.CharField(max_length=50, unique=True, help_text="e.g. inf2.xlarge")
    hourly_usd = models.DecimalField(max_digits=10, decimal_places=4)
    note = models.CharField(max_length=200, blank=True, help_text="Where the price comes from")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instance_type"]

    def __str__(self) -> str:
        return f"{self.instance_type} ${self.hourly_usd}/h"


class BenchmarkRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Profile(models.TextChoices):
        QA = "qa", "Question answering (2:1)"
        SUMMARIZATION = "summarization", "Summarization (8:1)"
        GENERATION = "generation", "Generation (1:1)"
        JSONL = "jsonl", "Prompts from a JSONL file"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    deployment = models.ForeignKey("catalog.Deployment", on_delete=models.CASCADE, related_name="benchmark_runs")
    # Inputs
    concurrency_levels = models.JSONField(default=list, blank=True, help_text="Closed-loop levels, e.g. [1, 4, 16]")
    rate_levels = models.JSONField(default=list, blank=True, help_text="Open-loop levels in requests/s, e.g. [2, 8]")
    burstiness = models.FloatField(default=1.0, help_text="Gamma shape of open-loop arrivals; 1 = Poisson")
    profile = models.CharField(max_length=20, choices=Profile.choices, default=Profile.QA)
    prompts_path = models.CharField(max_length=1000, blank=True, help_text="JSONL prompts (profile jsonl)")
    input_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Override the preset's input length")
    output_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Override the preset's output length")
    requests_per_level = models.PositiveIntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True, help_text="Per level, when no request count is given")
    ttft_slo_s = models.FloatField(default=2.0)
    itl_slo_s = models.FloatField(default=0.2, help_text="Default 200 ms, a human reading speed")
    max_error_rate = models.FloatField(default=0.5, help_text="A level stops early past this share of errors")
    instance_type = models.CharField(max_length=50, blank=True, help_text="Price as this type; blank: the node's")
    gateway_url = models.CharField(max_length=300, blank=True, help_text="Blank: the CAPACITY_GATEWAY_URL setting")
    # Job state
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=100, blank=True)
    percent = models.PositiveSmallIntegerField(default=0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    api_key = models.ForeignKey("tenancy.APIKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The run's own key (of the benchmark tenant); revoked when it ends")
    celery_task_id = models.CharField(max_length=255, blank=True)
    results = models.JSONField(default=dict, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True, help_text="When its recommendation was applied")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"benchmark #{self.pk} {self.deployment.name}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def append_log(self, line: str) -> None:
        """Append one timestamped line to the in-memory log; the caller saves the row."""
        self.log = f"{self.log}{timezone.now().strftime('%H:%M:%S')} {line}\n"
