"""Runs one CompileJob: claim the row, hash, reuse a cached artifact or convert + validate + store, record the result.

The row is the source of truth; every stage change, percent and log line is committed as it happens, and a
heartbeat thread keeps `heartbeat_at` fresh so a sweep can tell a live job from one whose worker died.
"""
from __future__ import annotations

import errno
import logging
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from appliance.catalog.models import Artifact

from appliance.runtime.neuron.plan import default_max_model_len

from .conf import setting
from .artifact_store import compute_digest, get_store
from .converter import (
    CompileError, convert_checkpoint, source_checksum, toolchain_version, validate_artifact, write_manifest,
)
from .models import CompileJob

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """An administrator cancelled the job while it ran."""


class TransientCompileError(Exception):
    """An error worth retrying (the artifact store or the filesystem hiccuped)."""


def heartbeat_interval_s() -> float:
    return setting("COMPILE_HEARTBEAT_S")


def stale_after_s() -> float:
    return setting("COMPILE_STALE_AFTER_S")


@dataclass
class Claim:
    job: CompileJob | None
    reason: str


def claim(job_id: int, task_id: str, worker: str) -> Claim:
    """Lock the row and mark it running, unless it is finished, superseded, or live on another worker."""
    with transaction.atomic():
        job = CompileJob.objects.select_for_update().select_related("model_version__model").filter(pk=job_id).first()
        if job is None:
            return Claim(None, f"compile job {job_id} no longer exists")
        if job.is_finished:
            return Claim(None, f"compile job {job_id} is already {job.status}")
        if task_id and job.celery_task_id and job.celery_task_id != task_id:
            return Claim(None, f"compile job {job_id} was re-queued as task {job.celery_task_id}")
        fresh = job.heartbeat_at and timezone.now() - job.heartbeat_at < timedelta(seconds=stale_after_s())
        if job.status == CompileJob.Status.RUNNING and fresh and job.worker != worker:
            return Claim(None, f"compile job {job_id} is running on {job.worker}")
        job.status = CompileJob.Status.RUNNING
        job.attempts += 1
        job.worker = worker
        job.celery_task_id = task_id or job.celery_task_id
        job.started_at = job.started_at or timezone.now()
        job.heartbeat_at = timezone.now()
        job.error = ""
        job.digest = ""  # taken again once hashed (one running job per digest)
        job.append_log(f"attempt {job.attempts} started on {worker or 'this process'}")
        job.save()
        return Claim(job, "claimed")


class _Heartbeat(threading.Thread):
    def __init__(self, job_id: int, interval: float) -> None:
        super().__init__(daemon=True, name=f"compile-heartbeat-{job_id}")
        self.job_id, self.interval, self.stopped = job_id, interval, threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                CompileJob.objects.filter(pk=self.job_id, status=CompileJob.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()


class JobRecorder:
    """Commits progress to the row as it happens."""

    def __init__(self, job: CompileJob) -> None:
        self.job = job

    def __call__(self, stage: str, percent: int, line: str = "") -> None:
        job = self.job
        if CompileJob.objects.filter(pk=job.pk, status=CompileJob.Status.CANCELLED).exists():
            raise JobCancelled()
        job.stage, job.percent = stage, max(job.percent, min(percent, 100))
        if line:
            job.append_log(line)
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["stage", "percent", "log", "heartbeat_at"])


def finish(job: CompileJob, status: str, *, error: str = "", line: str = "") -> None:
    job.status = status
    job.error = error
    job.finished_at = timezone.now()
    if status == CompileJob.Status.SUCCEEDED:
        job.percent = 100
        job.stage = "done"
    if line:
        job.append_log(line)
    job.save()
    from .services import on_compile_finished

    on_compile_finished(job)


def run_compile_job(job_id: int, task_id: str = "", worker: str = "") -> str:
    """Execute the job (idempotent); returns a one-line outcome. Raises TransientCompileError to ask for a retry."""
    claimed = claim(job_id, task_id, worker)
    if claimed.job is None:
        log.info(claimed.reason)
        return claimed.reason
    job = claimed.job
    heartbeat = _Heartbeat(job.pk, heartbeat_interval_s())
    heartbeat.start()
    try:
        return _execute(job, JobRecorder(job))
    except JobCancelled:
        return "cancelled"
    except CompileError as exc:
        finish(job, CompileJob.Status.FAILED, error=str(exc), line=f"failed: {exc}")
        return f"failed: {exc}"
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # retrying will not make room
            message = (f"no space left on the disk during stage {job.stage or 'start'} ({exc}); free space under "
                       f"APPLIANCE_HOME and the artifact store ({settings.ARTIFACT_STORE_URL}), then queue the "
                       "compile again")
            finish(job, CompileJob.Status.FAILED, error=message, line=f"failed: {message}")
            return f"failed: {message}"
        job.status = CompileJob.Status.QUEUED
        job.append_log(f"transient storage error at stage {job.stage or 'start'}: {exc}")
        job.save(update_fields=["status", "log"])
        raise TransientCompileError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any other failure is recorded on the row, never lost
        message = (
            f"unexpected {type(exc).__name__} during stage {job.stage or 'start'}: {exc}. "
            "The log has the traceback; fix the checkpoint or options and queue the compile again"
        )
        finish(job, CompileJob.Status.FAILED, error=message, line=traceback.format_exc())
        return f"failed: {message}"
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)


def _execute(job: CompileJob, progress: JobRecorder) -> str:
    version = job.model_version
    options = job.options()
    src = Path(version.source_uri)
    if version.source_uri.startswith("s3://"):
        raise CompileError(
            f"model version {version} points at {version.source_uri}; compile reads a local directory, "
            "so copy the checkpoint to this node and register that directory"
        )
    _check_options(job)
    if job.target == "neuron":
        _check_plan(job, src, progress)
    progress("hashing", 5, f"hashing {src}")
    toolchain = _toolchain(job.target)
    digest = compute_digest(source_checksum(src, version.checksum), options, toolchain)
    progress("hashing", 15, f"content address {digest}")
    _hold_digest(job, digest, progress)

    store = get_store()
    cached = Artifact.objects.filter(digest=digest).first()
    if cached is not None and store.exists(digest):
        job.cache_hit = True
        job.artifact = cached
        finish(job, CompileJob.Status.SUCCEEDED,
               line=f"cache hit: artifact {digest[:12]} already stored at {cached.uri}; no recompile")
        return "cache hit"
    if store.exists(digest):
        progress("storing", 95, f"artifact {digest[:12]} was stored by an earlier attempt; resuming at registration")
        return _register(job, digest, store.uri(digest), toolchain, options)

    staging_root = Path(settings.APPLIANCE_HOME) / "compile-staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"job{job.pk}-", dir=staging_root))
    try:
        if job.target == "neuron":
            extra = _compile_neuron(job, src, staging, progress)
        else:
            progress("converting", 20, f"converting weights to {job.dtype} safetensors")
            convert_checkpoint(src, staging, job.dtype, progress)
            progress("validating", 60, f"loading the artifact on {job.target} and running a warm-up batch")
            extra = {"validation": validate_artifact(staging, job.target, progress)}
        progress("storing", 92, "writing manifest and storing the artifact")
        write_manifest(staging, digest, options, toolchain, {"model_version": str(version), **extra})
        size = _dir_size(staging)
        uri = store.put_dir(digest, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _register(job, digest, uri, toolchain, options, size)


def _hold_digest(job: CompileJob, digest: str, progress: JobRecorder) -> None:
    """Record `digest` on this running job. The database admits one running job per digest, so when another job
    (another node, or another version with the same weights and options) is building this artifact, wait for it to
    finish (or for the sweep to re-queue it if its worker died); the caller then finds its artifact."""
    waited_for = None
    while True:
        try:
            with transaction.atomic():
                CompileJob.objects.filter(pk=job.pk).update(digest=digest)
            job.digest = digest
            if waited_for is not None:
                progress("hashing", 15, f"job #{waited_for} no longer holds artifact {digest[:12]}; going on")
            return
        except IntegrityError:
            holder = CompileJob.objects.filter(digest=digest, status=CompileJob.Status.RUNNING).exclude(pk=job.pk)
            holder = holder.values_list("pk", "worker", "heartbeat_at").first()
            if holder is not None and holder[0] != waited_for:
                waited_for = holder[0]
                progress("waiting", 15, f"job #{holder[0]} on {holder[1] or '?'} is building artifact {digest[:12]}; "
                         "waiting for it instead of compiling the same artifact twice")
            else:
                progress("waiting", 15)  # heartbeat, and notice a cancel
            stale = timezone.now() - timedelta(seconds=stale_after_s())
            if holder is not None and (holder[2] is None or holder[2] < stale):
                sweep_stale_jobs()  # its worker died: re-queue it now rather than wait for celery beat's sweep
            time.sleep(min(heartbeat_interval_s(), 2.0))


def _register(job: CompileJob, digest: str, uri: str, toolchain: str, options: dict, size: int | None = None) -> str:
    size = _dir_size(Path(uri)) if size is None else size
    artifact, _ = Artifact.objects.get_or_create(
        digest=digest,
        defaults={"model_version": job.model_version, "target": job.target, "uri": uri, "size_bytes": size,
                  "toolchain_version": toolchain, "options": options},
    )
    job.artifact = artifact
    finish(job, CompileJob.Status.SUCCEEDED, line=f"stored artifact {digest[:12]} at {uri} ({size} bytes)")
    return "succeeded"


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _check_options(job: CompileJob) -> None:
    if job.target in ("cpu", "cuda"):
        if job.tp_degree != 1:
            raise CompileError(f"tp_degree {job.tp_degree} needs target neuron; cpu and cuda artifacts use tp_degree 1")
        if job.quantization != CompileJob.Quantization.NONE:
            raise CompileError(f"quantization {job.quantization!r} is only available for target neuron; use 'none'")
        if job.kernels:
            raise CompileError("NKI kernels run only on Neuron; turn kernels off for target " + job.target)
        if job.kv_layout:
            raise CompileError(f"kv_layout is a Neuron compile option; leave it empty for target {job.target}")
    for field in ("batch_buckets", "seq_len_buckets"):
        values = getattr(job, field) or []
        if not isinstance(values, list) or any(not isinstance(v, int) or v < 1 for v in values):
            raise CompileError(f"{field} must be a list of positive integers, got {values!r}")


def _toolchain(target: str) -> str:
    if target == "neuron":
        try:
            from appliance.runtime.neuron.sdk import toolchain_version as neuron_toolchain

            return neuron_toolchain()
        except Exception:  # noqa: BLE001 - the SDK is absent; the compile step reports that plainly
            return "neuron-sdk-unavailable"
    return toolchain_version(target)


def context_length(version, src: Path) -> int:
    """The checkpoint's own context (max_position_embeddings), which the registered version may not carry."""
    import json

    config = version.config or json.loads((src / "config.json").read_text())
    return int(config.get("max_position_embeddings") or version.context_length)


def neuron_options(job: CompileJob, src: Path) -> dict:
    """The job's options in the Neuron compiler's terms (appliance.runtime.neuron.options.NeuronCompileOptions)."""
    seq_lens = sorted(job.seq_len_buckets or [])
    options: dict = {
        "tp_degree": job.tp_degree,
        "dtype": job.dtype,
        "quantization": None if job.quantization in ("", "none", None) else job.quantization,
        "kernels": bool(job.kernels),
        "max_model_len": seq_lens[-1] if seq_lens else default_max_model_len(context_length(job.model_version, src)),
    }
    if job.kv_layout:
        options["kv_layout"] = job.kv_layout
    if job.batch_buckets:
        options["batch_sizes"] = sorted(job.batch_buckets)
    if seq_lens:
        options["context_buckets"] = seq_lens
        options["token_buckets"] = seq_lens
    return options


def node_instance_type() -> str:
    """This node's instance type, as its Node row records it ("" when unknown)."""
    from appliance.catalog.models import Node

    return Node.objects.filter(name=settings.NODE_NAME).values_list("instance_type", flat=True).first() or ""


def neuron_plan(job: CompileJob, src: Path, instance: str = ""):
    """The plan (appliance.runtime.neuron.plan) for this job's neuron compile on `instance` (unknown types: none)."""
    import json

    from appliance.runtime.neuron.instances import INSTANCES
    from appliance.runtime.neuron.plan import make_plan

    config_path = src / "config.json"
    if not config_path.is_file():
        raise CompileError(f"{src} has no config.json; register a Hugging Face checkpoint directory")
    weights = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    try:
        return make_plan(json.loads(config_path.read_text()), instance if instance in INSTANCES else None,
                         neuron_options(job, src), model=str(job.model_version), checkpoint_bytes=weights or None)
    except ValueError as exc:
        raise CompileError(f"neuron compile options: {exc}") from None


def _check_plan(job: CompileJob, src: Path, progress: JobRecorder) -> None:
    """Fail before any compile when the plan refuses (host or device memory, TP degree, lengths)."""
    instance = node_instance_type()
    plan = neuron_plan(job, src, instance)
    where = plan.instance.name if plan.instance else f"instance type {instance or 'unknown'} (host memory unchecked)"
    progress("planning", 3, f"plan on {where}: tp_degree {plan.tp_degree}, {plan.graphs.total} graphs, host memory "
             f"{plan.host.describe()}")
    if not plan.fits:
        raise CompileError(f"the neuron plan refuses this compile: {plan.reason}")


def _compile_neuron(job: CompileJob, src: Path, out: Path, progress: JobRecorder) -> dict:
    not_installed = (
        "Neuron SDK not installed: target neuron compiles only on an Inferentia2/Trainium instance with the Neuron "
        "SDK 2.28 (the appliance AMI); run the compile there, or choose target cpu"
    )
    try:
        from appliance.runtime.neuron.compile import compile_artifact
        from appliance.runtime.neuron.sdk import NeuronSDKUnavailable
    except ImportError as exc:
        raise CompileError(f"{not_installed} ({exc})") from exc

    def cb(stage: str, percent: int, line: str = "") -> None:
        progress(f"neuron:{stage}", 20 + int(70 * percent / 100), line)

    out.rmdir()  # compile_artifact builds beside it and renames into place
    try:
        manifest = compile_artifact(src, neuron_options(job, src), out, cb,
                                    model_checksum=job.model_version.checksum or None)
    except NeuronSDKUnavailable as exc:
        raise CompileError(f"{not_installed}. {exc}") from exc
    except ImportError as exc:  # a Neuron package importing a name its dependencies no longer have
        raise CompileError(f"the Neuron SDK is installed but does not import: {exc}. Check that the node's Python "
                           "environment is the AMI's (Neuron 2.28 set, transformers 4.57)") from exc
    except (ValueError, RuntimeError, OSError) as exc:  # bad options or a failed compile: not worth retrying
        raise CompileError(f"neuron compile failed: {exc}") from exc
    return {"neuron": manifest if isinstance(manifest, dict) else {}}


def sweep_stale_jobs(max_attempts: int | None = None) -> list[tuple[int, str]]:
    """Re-queue (or, after max_attempts, fail) running jobs whose worker stopped heartbeating."""
    max_attempts = max_attempts or int(setting("COMPILE_MAX_ATTEMPTS"))
    cutoff = timezone.now() - timedelta(seconds=stale_after_s())
    outcomes: list[tuple[int, str]] = []
    stale_ids = list(
        CompileJob.objects.filter(status=CompileJob.Status.RUNNING, heartbeat_at__lt=cutoff)
        .values_list("pk", flat=True)
    )
    for job_id in stale_ids:
        with transaction.atomic():
            job = CompileJob.objects.select_for_update(skip_locked=True).filter(
                pk=job_id, status=CompileJob.Status.RUNNING, heartbeat_at__lt=cutoff
            ).first()
            if job is None:
                continue
            lost = f"worker {job.worker or '?'} stopped heartbeating during stage {job.stage or 'start'}"
            if job.attempts >= max_attempts:
                finish(
                    job,
                    CompileJob.Status.FAILED,
                    error=(
                        f"the compile worker was lost {job.attempts} times ({lost}); giving up. Check the worker's "
                        "memory and logs (killed or out of memory?), then queue the compile again"
                    ),
                    line=f"{lost}; attempt {job.attempts} of {max_attempts}: failed",
                )
                outcomes.append((job.pk, "failed"))
            else:
                from .services import enqueue_compile

                job.status = CompileJob.Status.QUEUED
                job.append_log(f"{lost}; re-queued (attempt {job.attempts + 1} of {max_attempts} next)")
                job.save(update_fields=["status", "log"])
                enqueue_compile(job)
                outcomes.append((job.pk, "requeued"))
    return outcomes
