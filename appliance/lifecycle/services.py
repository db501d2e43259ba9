"""Lifecycle operations shared by the management commands, the admin API and the console."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from appliance.celery import ensure_broker_folders
from appliance.catalog.models import Deployment, Device, Model, ModelVersion, Node, Pool
from appliance.runtime.encoder import is_encoder_model

from . import placement
from .models import CompileJob

MODES = [m.value for m in Deployment.Mode]
DEVICES = [d.value for d in Device]


class LifecycleError(ValueError):
    """Bad input to a lifecycle operation; the message names what to fix."""


def enqueue_compile(job: CompileJob, fresh_task_id: bool = True) -> None:
    """Send the job to Celery once the row's transaction commits; a fresh task id supersedes earlier messages
    (a duplicate message with the same id is harmless: the task skips a finished or live job)."""
    from .tasks import compile_model

    if fresh_task_id or not job.celery_task_id:
        job.celery_task_id = uuid.uuid4().hex
        job.save(update_fields=["celery_task_id"])
    task_id, job_id = job.celery_task_id, job.pk

    def send() -> None:
        ensure_broker_folders()
        try:
            compile_model.apply_async(args=[job_id], task_id=task_id)
        except Exception as exc:  # noqa: BLE001 - the row says what happened; the job stays queued
            row = CompileJob.objects.get(pk=job_id)
            row.append_log(f"could not reach the Celery broker ({type(exc).__name__}: {exc}); "
                           "start the broker and a worker, then queue the compile again")
            row.save(update_fields=["log"])

    transaction.on_commit(send)


def request_compile(version: ModelVersion, target: str = "cpu", *, tp_degree: int = 1,
                    batch_buckets: list[int] | None = None, seq_len_buckets: list[int] | None = None,
                    dtype: str | None = None, quantization: str = "none", kernels: bool = False,
                    kv_layout: str = "") -> CompileJob:
    """Queue a compile of `version` for `target`. An identical queued or running job is reused, also when another
    node asks at the same moment: the database admits one live job per (version, options)."""
    if target not in DEVICES:
        raise LifecycleError(f"target must be one of {', '.join(DEVICES)}, got {target!r}")
    if quantization not in CompileJob.Quantization.values:
        raise LifecycleError(f"quantization must be one of {', '.join(CompileJob.Quantization.values)}")
    check_kv_layout(target, kv_layout)
    if tp_degree < 1:
        raise LifecycleError("tp_degree must be at least 1")
    fields = dict(model_version=version, target=target, tp_degree=tp_degree, batch_buckets=sorted(batch_buckets or []),
                  seq_len_buckets=sorted(seq_len_buckets or []), dtype=dtype or version.dtype or "float32",
                  quantization=quantization, kernels=kernels, kv_layout=kv_layout or "")
    key = CompileJob(**fields).compute_request_key()
    with transaction.atomic():
        for _ in range(3):
            job = _live_job(key)
            if job is not None:
                if job.status == CompileJob.Status.QUEUED:  # its message may never have reached a broker: resend
                    enqueue_compile(job, fresh_task_id=False)
                return job
            try:
                with transaction.atomic():  # a savepoint: the unique index makes a concurrent request's insert wait
                    job = CompileJob.objects.create(request_key=key, **fields)
            except IntegrityError:  # another node queued the same compile first and committed it: join that job
                continue
            job.append_log(f"queued: {version} -> {target}")
            job.save(update_fields=["log"])
            enqueue_compile(job)
            return job
    raise LifecycleError("the same compile kept being queued and finished by other requests meanwhile; "
                         "request it again")


def _live_job(request_key: str) -> CompileJob | None:
    return CompileJob.objects.filter(
        request_key=request_key, status__in=[CompileJob.Status.QUEUED, CompileJob.Status.RUNNING]
    ).first()


def check_kv_layout(target: str, kv_layout: str | None) -> None:
    layouts = [v for v in CompileJob.KVLayout.values if v]
    if kv_layout and kv_layout not in layouts:
        raise LifecycleError(f"kv_layout must be one of {', '.join(layouts)} (or empty for the default), "
                             f"got {kv_layout!r}")
    if kv_layout and target != "neuron":
        raise LifecycleError(f"kv_layout is a Neuron compile option; target {target} has no compiled KV layout")


def cancel_compile(job: CompileJob) -> CompileJob:
    with transaction.atomic():
        job = CompileJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_finished:
            job.status = CompileJob.Status.CANCELLED
            job.finished_at = timezone.now()
            job.append_log("cancelled by an administrator")
            job.save()
    return job


def on_compile_finished(job: CompileJob) -> None:
    """Hand a new artifact to the deployments waiting for it (or let them report the failure)."""
    deps = Deployment.objects.filter(model_version=job.model_version, device=job.target)
    if job.status == CompileJob.Status.SUCCEEDED and job.artifact_id:
        deps.filter(artifact=None).update(artifact=job.artifact)
    for dep_id in list(deps.values_list("pk", flat=True)):
        transaction.on_commit(lambda dep_id=dep_id: placement.place(dep_id))


def local_node(device: str = "cpu") -> Node:
    from .inventory import register_node

    node = Node.objects.filter(name=settings.NODE_NAME).first()
    return node if node is not None else register_node(settings.NODE_NAME, device)


@dataclass
class DeployResult:
    deployment: Deployment
    compile_job: CompileJob | None
    message: str


def deploy(name: str, *, device: str = "cpu", replicas: int | None = None, min_replicas: int | None = None,
           max_replicas: int | None = None, idle_timeout: int | None = None, mode: str | None = None,
           cores_per_replica: int | None = None, pool: str | None = None, compile: bool = True,
           dtype: str | None = None, kv_layout: str = "") -> DeployResult:
    """Create or update the deployment named after model `name` (latest version), compile if needed, place it.

    On neuron the artifact is compiled for tensor parallelism over each replica's cores (tp_degree =
    cores_per_replica): the runtime runs an artifact on exactly tp_degree NeuronCores."""
    if device not in DEVICES:
        raise LifecycleError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    check_kv_layout(device, kv_layout)
    if mode is not None and mode not in MODES:
        raise LifecycleError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    for flag, value in (("--replicas", replicas), ("--min-replicas", min_replicas), ("--max-replicas", max_replicas),
                        ("--idle-timeout", idle_timeout)):
        if value is not None and value < 0:
            raise LifecycleError(f"{flag} must be 0 or more, got {value}")
    if cores_per_replica is not None and cores_per_replica < 1:
        raise LifecycleError(f"--cores-per-replica must be at least 1, got {cores_per_replica}")
    model = Model.objects.filter(name=name).first()
    if model is None:
        raise LifecycleError(f"no model named {name!r}; register it first: python manage.py register_model {name} DIR")
    version = model.versions.order_by("-version").first()
    if version is None:
        raise LifecycleError(f"model {name!r} has no versions; register one with register_model")
    if is_encoder_model(version.config, version.source_uri):  # embedding models: served as registered, no compile
        if device == Device.NEURON:
            raise LifecycleError(f"{name!r} is an embedding (encoder) model: deploy it with --device cpu or cuda")
        compile = False

    local_node(device)
    with transaction.atomic():
        dep = Deployment.objects.select_for_update().filter(name=name).first()
        creating = dep is None
        if creating:
            dep = Deployment(name=name, model_version=version, device=device)
        if dep.model_version_id != version.pk or dep.device != device:
            dep.artifact = None
        dep.model_version, dep.device, dep.is_active = version, device, True
        dep.mode = mode or dep.mode
        if cores_per_replica is not None:
            dep.cores_per_replica = cores_per_replica
        if idle_timeout is not None:
            dep.idle_timeout_s = idle_timeout
        _apply_replica_counts(dep, creating, replicas, min_replicas, max_replicas)
        if pool is not None:
            dep.pool = _pool(pool, device, dep.cores_per_replica)
        if dep.mode == Deployment.Mode.SHARED and dep.pool is None:
            raise LifecycleError("--mode shared needs --pool NAME (the pool the model loads into)")
        if dep.status in (Deployment.Status.STOPPED, Deployment.Status.FAILED):
            dep.status = Deployment.Status.PENDING
        dep.save()
        job = None
        if compile:
            tp = dep.cores_per_replica if device == Device.NEURON else 1  # a neuron replica runs on tp_degree cores
            job = request_compile(version, device, tp_degree=tp, dtype=dtype, kv_layout=kv_layout)
        else:
            dep.artifact = None
            dep.save(update_fields=["artifact"])
    if job is not None and job.is_finished and job.status == CompileJob.Status.SUCCEEDED:
        Deployment.objects.filter(pk=dep.pk).update(artifact=job.artifact)
    message = placement.place(dep.pk)
    dep.refresh_from_db()
    return DeployResult(dep, job, message)


def _apply_replica_counts(dep: Deployment, creating: bool, replicas: int | None, min_r: int | None,
                          max_r: int | None) -> None:
    if dep.mode == Deployment.Mode.SHARED:  # loaded on demand, evicted under pressure: 0 or 1 replica
        dep.min_replicas, dep.max_replicas = 0, 1
        dep.desired_replicas = min(dep.desired_replicas, 1) if not creating else 0
        return
    if min_r is None:
        if replicas is not None and dep.mode == Deployment.Mode.DEDICATED:
            min_r = replicas
        elif creating:
            min_r = 0 if dep.mode == Deployment.Mode.PER_MODEL else 1
        else:
            min_r = dep.min_replicas
    if max_r is None:
        max_r = max(dep.max_replicas if not creating else 1, replicas or 0, min_r, 1)
    if min_r > max_r:
        raise LifecycleError(f"--min-replicas {min_r} exceeds --max-replicas {max_r}")
    if replicas is not None and replicas > max_r:
        raise LifecycleError(f"--replicas {replicas} exceeds --max-replicas {max_r}")
    dep.min_replicas, dep.max_replicas = min_r, max_r
    if replicas is not None:
        dep.desired_replicas = replicas
    elif creating:
        dep.desired_replicas = min_r
    else:
        dep.desired_replicas = min(max(dep.desired_replicas, min_r), max_r)


def _pool(name: str, device: str, cores: int) -> Pool:
    pool = Pool.objects.filter(name=name).first()
    if pool is None:
        pool = Pool.objects.create(name=name, node=local_node(device), cores=cores)
    return pool


def wake(deployment: Deployment) -> None:
    """What the gateway does for a request to a deployment with no ready replica: ask for one, now."""
    Deployment.objects.filter(pk=deployment.pk).update(
        desired_replicas=Greatest(F("desired_replicas"), 1), last_request_at=timezone.now()
    )


COLD_STARTS_KEPT = 20


@transaction.atomic
def record_cold_start(deployment_id: int, replica_index: int, phases: dict[str, float]) -> None:
    """Keep a replica start's phases on its deployment (the last COLD_STARTS_KEPT, newest first), so the figures
    outlive the replica (scale to zero deletes or stops it)."""
    dep = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
    if dep is None:
        return
    entry = {"replica": replica_index, "at": timezone.now().isoformat(), "total_s": phases.get("first_ready"),
             "phases": phases}
    dep.cold_starts = [entry, *(dep.cold_starts or [])][:COLD_STARTS_KEPT]
    dep.save(update_fields=["cold_starts"])
