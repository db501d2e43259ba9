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
