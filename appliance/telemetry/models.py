"""Occupancy time series per NeuronCore / GPU / replica process, and profile jobs."""
from django.db import models

from appliance.catalog.models import Device


class OccupancySample(models.Model):
    node = models.ForeignKey("catalog.Node", on_delete=models.CASCADE, related_name="samples")
    replica = models.ForeignKey(
        "catalog.Replica", null=True, blank=True, on_delete=models.SET_NULL, related_name="samples"
    )
    device = models.CharField(max_length=10, choices=Device.choices)
    core = models.IntegerField(null=True, blank=True, help_text="NeuronCore or GPU index; empty for a CPU process")
    utilization_pct = models.FloatField()
    memory_bytes = models.BigIntegerField(default=0)
    extra = models.JSONField(default=dict, blank=True, help_text="Execution latency / error counts where known")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["replica", "created_at"])]


class ProfileJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    replica = models.ForeignKey("catalog.Replica", on_delete=models.CASCADE, related_name="profiles")
    duration_s = models.FloatField(default=5.0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=100, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    output_dir = models.CharField(max_length=1000, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class EngineSample(models.Model):
    """One scrape of an engine replica's /metrics: gauges as read, rates and quantiles over the time since the replica's
    previous sample (derived from the cumulative counters and histogram buckets kept in `counters`)."""

    replica = models.ForeignKey("catalog.Replica", on_delete=models.CASCADE, related_name="engine_samples")
    interval_s = models.FloatField(null=True, blank=True, help_text="Seconds since the previous sample; empty first")
    running = models.PositiveIntegerField(default=0)
    waiting = models.PositiveIntegerField(default=0)
    kv_blocks_used = models.PositiveIntegerField(default=0)
    kv_blocks_total = models.PositiveIntegerField(default=0)
    max_num_seqs = models.PositiveIntegerField(null=True, blank=True)
    generation_tokens = models.BigIntegerField(default=0, help_text="Cumulative generated tokens")
    tokens_per_s = models.FloatField(null=True, blank=True)
    seqs_per_step = models.FloatField(null=True, blank=True, help_text="Mean batch size over the interval")
    tokens_per_step = models.FloatField(null=True, blank=True, help_text="Mean batched tokens per step")
    ttft_p50_s = models.FloatField(null=True, blank=True)
    itl_p50_s = models.FloatField(null=True, blank=True)
    ttft_p95_s = models.FloatField(null=True, blank=True)
    ttft_p99_s = models.FloatField(null=True, blank=True)
    itl_p95_s = models.FloatField(null=True, blank=True)
    itl_p99_s = models.FloatField(null=True, blank=True)
    queue_p50_s = models.FloatField(null=True, blank=True, help_text="Engine queue time (arrival to scheduled)")
    queue_p95_s = models.FloatField(null=True, blank=True)
    preemptions = models.PositiveIntegerField(default=0, help_text="Preemptions during the interval")
    prefix_cache_hit_rate = models.FloatField(null=True, blank=True, help_text="Hit tokens / queried, interval")
    counters = models.JSONField(default=dict, blank=True, help_text="Cumulative counters and histogram buckets")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["replica", "created_at"])]

    @property
    def kv_use_pct(self) -> float | None:
        return 100.0 * self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else None

    @property
    def batch_occupancy_pct(self) -> float | None:
        if not self.max_num_seqs or self.seqs_per_step is None:
            return None
        return 100.0 * self.seqs_per_step / self.max_num_seqs
