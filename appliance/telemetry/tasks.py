from celery import shared_task

from . import services


@shared_task(name="telemetry.prune_samples", ignore_result=True)
def prune_samples(older_than_s: float = 7 * 24 * 3600) -> int:
    """Delete occupancy and engine samples older than `older_than_s`; returns how many rows went."""
    from . import engine_sampler

    return services.prune(older_than_s) + engine_sampler.prune(older_than_s)


@shared_task(name="telemetry.profile_replica", ignore_result=True, acks_late=True)
def profile_replica(job_id: int) -> None:
    """Profile a replica. The ProfileJob row is the source of truth; a finished job is left alone."""
    import os
    from pathlib import Path

    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from appliance.catalog.models import Device

    from . import profiling
    from .models import ProfileJob

    with transaction.atomic():
        job = ProfileJob.objects.select_for_update().select_related("replica__deployment__artifact").get(pk=job_id)
        if job.status in (ProfileJob.Status.SUCCEEDED, ProfileJob.Status.FAILED):
            return
        job.status, job.stage, job.started_at = ProfileJob.Status.RUNNING, "capturing", timezone.now()
        job.save(update_fields=["status", "stage", "started_at"])
    replica = job.replica
    out_dir = Path(settings.APPLIANCE_HOME) / "profiles" / str(job.id)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if replica.deployment.device == Device.NEURON:
            artifact = replica.deployment.artifact
            neffs = profiling.artifact_neffs(Path(artifact.uri)) if artifact else []
            if not neffs:
                raise RuntimeError("the deployment's artifact holds no NEFF to profile (neffs/ is written by compiles "
                                   "from this release on); compile it for neuron again")
            env = {**os.environ, **profiling.free_cores_env(replica)}
            summary = profiling.profile_neuron(neffs, out_dir, env)
        else:
            if replica.port is None and not replica.socket_path:
                raise RuntimeError("the replica is not running; start it before profiling")
            base = "http://replica" if replica.socket_path else replica.base_url
            summary = profiling.profile_engine(base, job.duration_s, out_dir, uds=replica.socket_path,
                                               headers=replica.auth_headers)
    except Exception as exc:  # recorded on the row in words the user can act on
        ProfileJob.objects.filter(pk=job.id).update(
            status=ProfileJob.Status.FAILED, stage="failed", error=str(exc) or type(exc).__name__,
            finished_at=timezone.now(),
        )
        return
    ProfileJob.objects.filter(pk=job.id).update(
        status=ProfileJob.Status.SUCCEEDED, stage="done", summary=summary, output_dir=str(out_dir),
        finished_at=timezone.now(),
    )
