"""Compile jobs: one row per (model version, target, options); the row is the source of truth for the job's state."""
from __future__ import annotations

import hashlib
import json

from django.db import models
from django.utils import timezone

from appliance.catalog.models import Artifact, Device, ModelVersion


class CompileJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class Quantization(models.TextChoices):
        NONE = "none", "None"
        INT8 = "int8", "int8 weights"

    class KVLayout(models.TextChoices):
        DEFAULT = "", "Default (block on Neuron)"
        BLOCK = "block", "Block (paged; prefix caching and chunked prefill)"
        CONTIGUOUS = "contiguous", "Contiguous (a cache line per sequence)"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="compile_jobs")
    target = models.CharField(max_length=10, choices=Device.choices, default=Device.CPU)
    tp_degree = models.PositiveIntegerField(default=1, help_text="Tensor-parallel degree")
    batch_buckets = models.JSONField(default=list, blank=True, help_text="Compiled batch sizes, e.g. [1, 4, 8]")
    seq_len_buckets = models.JSONField(default=list, blank=True, help_text="Compiled sequence lengths")
    dtype = models.CharField(max_length=20, default="float32")
    quantization = models.CharField(max_length=10, choices=Quantization.choices, default=Quantization.NONE)
    kernels = models.BooleanField(default=False, help_text="Use NKI kernels (Neuron only)")
    kv_layout = models.CharField(max_length=10, choices=KVLayout.choices, default=KVLayout.DEFAULT, blank=True,
                                 help_text="Neuron KV cache layout")

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=50, blank=True)
    percent = models.PositiveSmallIntegerField(default=0)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why the job failed, in words a user can act on")
    cache_hit = models.BooleanField(default=False)
    digest = models.CharField(max_length=64, blank=True, help_text="Content address of the artifact")
    request_key = models.CharField(max_length=64, blank=True, editable=False,
                                   help_text="sha256 of the model version and options; one live job per key")
    artifact = models.ForeignKey(Artifact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    celery_task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Compile once across the fleet: two nodes asking at once for the same compile get one job (the second
            # insert waits for the first's commit, then fails and finds the first's row) ...
            models.UniqueConstraint(
                fields=["request_key"], name="one_live_compile_job_per_request",
                condition=models.Q(status__in=["queued", "running"]) & ~models.Q(request_key=""),
            ),
            # ... and one running job builds an artifact: another job that reaches the same digest waits for it.
            models.UniqueConstraint(
                fields=["digest"], name="one_running_compile_job_per_digest",
                condition=models.Q(status="running") & ~models.Q(digest=""),
            ),
        ]

    def __str__(self) -> str:
        return f"compile #{self.pk} {self.model_version} -> {self.target}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    def options(self) -> dict:
        """The options that, with the weights and toolchain, determine the artifact (kv_layout only when chosen, so
        the artifacts compiled before it existed keep their content addresses)."""
        options = {
            "target": self.target,
            "tp_degree": self.tp_degree,
            "batch_buckets": sorted(self.batch_buckets or []),
            "seq_len_buckets": sorted(self.seq_len_buckets or []),
            "dtype": self.dtype,
            "quantization": self.quantization,
            "kernels": self.kernels,
        }
        if self.kv_layout:
            options["kv_layout"] = self.kv_layout
        return options

    def compute_request_key(self) -> str:
        """What makes two requests the same compile: the model version and the options."""
        payload = json.dumps({"model_version": self.model_version_id, "options": self.options()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def append_log(self, line: str) -> None:
        """Append one timestamped line to the in-memory log; the caller saves the row."""
        stamp = timezone.now().strftime("%H:%M:%S")
        self.log = f"{self.log}{stamp} {line}\n"
