"""Benchmark runs: create and queue one, the benchmark tenant's keys, prices, and applying a recommendation."""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from appliance.catalog.models import Deployment
from appliance.tenancy.audit import record_audit
from appliance.tenancy.models import APIKey, Tenant

from .models import BenchmarkRun, InstancePrice
from .profiles import PRESETS

BENCHMARK_TENANT = "appliance-benchmark"


class CapacityError(ValueError):
    """A request the caller can fix (unknown deployment, bad levels, no recommendation to apply)."""


def benchmark_tenant() -> Tenant:
    """The tenant that owns every benchmark key: kind benchmark (its usage is load tests, not billable use), every
    model, no quotas."""
    tenant, _ = Tenant.objects.get_or_create(
        name=BENCHMARK_TENANT, defaults={"kind": Tenant.Kind.BENCHMARK, "all_models": True,
                                         "display_name": "Benchmark runs (not billed)"})
    return tenant


def issue_key(run: BenchmarkRun) -> str:
    """A new key of the benchmark tenant for `run` (recorded on the row); returns the plaintext, which only the
    running job holds."""
    from appliance.tenancy.services import create_api_key

    key, plaintext = create_api_key(benchmark_tenant(), name=f"benchmark run {run.pk}")
    BenchmarkRun.objects.filter(pk=run.pk).update(api_key=key)
    run.api_key = key
    return plaintext


def revoke_key(run: BenchmarkRun) -> None:
    if run.api_key_id:
        APIKey.objects.filter(pk=run.api_key_id, revoked_at=None).update(revoked_at=timezone.now())


def hourly_price(instance_type: str) -> Decimal | None:
    row = InstancePrice.objects.filter(instance_type=instance_type).first() if instance_type else None
    return row.hourly_usd if row else None


def create_run(deployment: Deployment | str, *, concurrency: list[int] | None = None, rates: list[float] | None = None,
               profile: str = "qa", requests: int | None = None, duration_s: float | None = None,
               **fields) -> BenchmarkRun:
    """Validate the inputs and create the row (queued); `fields` are other BenchmarkRun inputs."""
    if isinstance(deployment, str):
        deployment = Deployment.objects.filter(name=deployment).first() or _unknown(deployment)
    concurrency, rates = list(concurrency or []), list(rates or [])
    if not concurrency and not rates:
        raise CapacityError("give at least one concurrency level or request rate")
    if any(not isinstance(c, int) or c < 1 for c in concurrency):
        raise CapacityError("concurrency levels must be positive integers")
    if any(not r > 0 for r in rates):
        raise CapacityError("request rates must be positive")
    if requests is None and duration_s is None:
        raise CapacityError("give a request count or a duration per level")
    if requests is not None and requests < 1 or duration_s is not None and duration_s <= 0:
        raise CapacityError("the request count and the duration must be positive")
    if profile not in PRESETS and profile != BenchmarkRun.Profile.JSONL:
        raise CapacityError(f"unknown profile {profile!r}: one of {', '.join([*PRESETS, 'jsonl'])}")
    if profile == BenchmarkRun.Profile.JSONL and not fields.get("prompts_path"):
        raise CapacityError("the jsonl profile needs a prompts file")
    run = BenchmarkRun(deployment=deployment, concurrency_levels=concurrency, rate_levels=rates, profile=profile,
                       requests_per_level=requests, duration_s=duration_s, **fields)
    for name in ("ttft_slo_s", "itl_slo_s"):
        if not getattr(run, name) > 0:
            raise CapacityError(f"{name} must be positive")
    run.save()
    return run


def _unknown(name: str):
    raise CapacityError(f"no deployment named {name!r}")


def enqueue(run: BenchmarkRun) -> BenchmarkRun:
    from .tasks import run_benchmark

    def send() -> None:
        result = run_benchmark.delay(run.pk)
        BenchmarkRun.objects.filter(pk=run.pk).update(celery_task_id=result.id)

    transaction.on_commit(send)
    return run


def apply_recommendation(run: BenchmarkRun, actor=None) -> Deployment:
    """Make the run's recommendation the deployment's autoscaling target: target_outstanding_per_replica becomes the
    recommended concurrency per replica, and max_replicas rises to the recommended replica count if below it."""
    rec = (run.results or {}).get("recommendation") or {}
    if run.status != BenchmarkRun.Status.SUCCEEDED or not rec.get("meets_slo"):
        raise CapacityError(f"benchmark run {run.pk} has no recommendation to apply"
                            + (f": {rec['reason']}" if rec.get("reason") else ""))
    with transaction.atomic():
        dep = Deployment.objects.select_for_update().get(pk=run.deployment_id)
        before = {"target_outstanding_per_replica": dep.target_outstanding_per_replica,
                  "max_replicas": dep.max_replicas}
        dep.target_outstanding_per_replica = int(rec["concurrency_per_replica"])
        dep.max_replicas = max(dep.max_replicas, int(rec["replicas"]))
        dep.save(update_fields=["target_outstanding_per_replica", "max_replicas", "updated_at"])
        BenchmarkRun.objects.filter(pk=run.pk).update(applied_at=timezone.now())
        after = {"target_outstanding_per_replica": dep.target_outstanding_per_replica,
                 "max_replicas": dep.max_replicas}
        record_audit(actor, "update", dep, {k: [before[k], after[k]] for k in after if before[k] != after[k]})
    return dep
