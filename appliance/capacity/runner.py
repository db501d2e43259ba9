"""Runs one BenchmarkRun: claim the row, warm the deployment up, run each level through the gateway, record results.

The row is the source of truth: stage, percent and log are committed as each level starts and ends, and the level
results as they come, so the console can draw a run while it runs. Safe to run twice: a finished run is left alone.
The run's requests use a key of its own (the benchmark tenant's), revoked when the run ends.
"""
from __future__ import annotations

import asyncio
import logging
import os

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.catalog.models import Replica

from . import services
from .loadgen import SLO, LevelSpec, Target, run_level, summarize
from .models import BenchmarkRun
from .profiles import PRESETS, Shape, load_jsonl, preset_prompts
from .recommend import cost_per_million, hourly_cost, recommend
from .sampling import LevelSampler

log = logging.getLogger(__name__)
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"


class RunCancelled(Exception):
    pass


def gateway_url(run: BenchmarkRun) -> str:
    return run.gateway_url or getattr(settings, "CAPACITY_GATEWAY_URL", None) or os.environ.get(
        "CAPACITY_GATEWAY_URL", DEFAULT_GATEWAY_URL)


def claim(run_id: int, task_id: str = "") -> BenchmarkRun | None:
    with transaction.atomic():
        run = BenchmarkRun.objects.select_for_update().select_related("deployment").filter(pk=run_id).first()
        if run is None or run.is_finished:
            return None
        run.status = BenchmarkRun.Status.RUNNING
        run.started_at = timezone.now()
        run.celery_task_id = task_id or run.celery_task_id
        run.results, run.percent, run.error = {}, 0, ""
        run.append_log(f"started{' (again: the last attempt did not finish)' if run.log else ''}")
        run.save()
        return run


def progress(run: BenchmarkRun, stage: str, percent: int, line: str = "") -> None:
    if BenchmarkRun.objects.filter(pk=run.pk, status=BenchmarkRun.Status.CANCELLED).exists():
        raise RunCancelled()
    run.stage, run.percent = stage, max(run.percent, min(percent, 100))
    if line:
        run.append_log(line)
    run.save(update_fields=["stage", "percent", "log", "results"])


def finish(run: BenchmarkRun, status: str, error: str = "", line: str = "") -> None:
    run.status, run.error, run.finished_at = status, error, timezone.now()
    if status == BenchmarkRun.Status.SUCCEEDED:
        run.percent = 100
    run.stage = status
    if line:
        run.append_log(line)
    run.save()


def levels(run: BenchmarkRun) -> list[LevelSpec]:
    common = {"requests": run.requests_per_level, "duration_s": None if run.requests_per_level else run.duration_s,
              "max_error_rate": run.max_error_rate}
    return ([LevelSpec(concurrency=c, **common) for c in run.concurrency_levels]
            + [LevelSpec(rate=r, burstiness=run.burstiness, seed=i, **common) for i, r in enumerate(run.rate_levels)])


def prompts(run: BenchmarkRun, count: int, seed: int):
    if run.profile == BenchmarkRun.Profile.JSONL:
        return load_jsonl(run.prompts_path, run.output_tokens or 32)
    preset = PRESETS[run.profile]
    shape = Shape(run.input_tokens or preset.input_tokens, run.output_tokens or preset.output_tokens)
    return preset_prompts(shape, count, seed)


def ready_replicas(run: BenchmarkRun) -> list[Replica]:
    return list(Replica.objects.filter(deployment=run.deployment, state=Replica.State.READY).select_related("node"))


def pricing(run: BenchmarkRun, replicas: list[Replica]) -> dict:
    node = replicas[0].node if replicas else None
    instance_type = run.instance_type or (node.instance_type if node else "")
    price = services.hourly_price(instance_type)
    hourly_usd = float(price) if price is not None else None
    node_cores = node.cores if node else 1
    cores = run.deployment.cores_per_replica
    return {"instance_type": instance_type, "hourly_usd": hourly_usd, "node_cores": node_cores,
            "hourly_cost_usd": hourly_cost(hourly_usd, len(replicas), cores, node_cores)}


async def _level(url: str, key: str, model: str, spec: LevelSpec, batch):
    target = Target(url, key, model)
    try:
        return await run_level(target, spec, batch)
    finally:
        await target.aclose()


def run_benchmark(run_id: int, task_id: str = "") -> str:
    """Run BenchmarkRun `run_id` to its end; returns its final status (or why it was left alone)."""
    run = claim(run_id, task_id)
    if run is None:
        return "skipped"
    try:
        key = services.issue_key(run)
        url, model = gateway_url(run), run.deployment.name
        slo = SLO(run.ttft_slo_s, run.itl_slo_s)
        specs = levels(run)
        progress(run, "warm-up", 1, f"warming {model} up through {url}")
        warm = asyncio.run(_level(url, key, model, LevelSpec(concurrency=1, requests=1), prompts(run, 1, 10**6)))
        if not warm.results[0].ok:
            raise RuntimeError(f"the warm-up request failed (HTTP {warm.results[0].status}): {warm.results[0].error}")
        replicas = ready_replicas(run)
        cost = pricing(run, replicas)
        run.results = {"run": run.pk, "config": {
            "deployment": model, "replicas": len(replicas), "cores_per_replica": run.deployment.cores_per_replica,
            "profile": run.profile, "slo": {"ttft_s": slo.ttft_s, "itl_s": slo.itl_s}, **cost}, "levels": []}
        if cost["hourly_cost_usd"] is None:
            run.append_log(f"no price for instance type {cost['instance_type'] or '(none set)'}: costs are empty "
                           "(set the node's instance type, or pass one, and add its price)")
        for i, spec in enumerate(specs):
            name = f"concurrency {spec.concurrency}" if spec.concurrency else f"rate {spec.rate}/s"
            progress(run, f"level {i + 1}/{len(specs)}: {name}", 5 + 90 * i // len(specs), f"{name}: started")
            count = spec.requests or 512  # by duration: reused in order
            sampler = LevelSampler(replicas)
            sampler.start()
            try:
                level_run = asyncio.run(_level(url, key, model, spec, prompts(run, count, seed=i)))
            finally:
                figures = sampler.stop()
            level = {**summarize(level_run, slo), **figures}
            level["cost_per_million_output_tokens"] = cost_per_million(cost["hourly_cost_usd"], level["output_tok_s"])
            run.results["levels"].append(level)
            progress(run, f"level {i + 1}/{len(specs)}: {name}", 5 + 90 * (i + 1) // len(specs),
                     f"{name}: {level['succeeded']}/{level['requests']} ok, {level['output_tok_s']:.1f} tok/s"
                     + (", stopped early on errors" if level["stopped_early"] else ""))
        run.results["recommendation"] = recommend([run.results])
        finish(run, BenchmarkRun.Status.SUCCEEDED, line="finished")
        return run.status
    except RunCancelled:
        run.refresh_from_db(fields=["status"])
        finish(run, BenchmarkRun.Status.CANCELLED, line="cancelled")
        return run.status
    except Exception as exc:
        log.exception("benchmark run %s failed", run_id)
        finish(run, BenchmarkRun.Status.FAILED, error=str(exc) or type(exc).__name__, line=f"failed: {exc}")
        return run.status
    finally:
        services.revoke_key(run)
