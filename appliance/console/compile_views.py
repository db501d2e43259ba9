"""Console: compile jobs. Start one from a form; the list polls /compile/jobs.json for stage, percent and log."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from appliance.lifecycle.models import CompileJob
from appliance.lifecycle.services import LifecycleError, request_compile
from appliance.tenancy.audit import record_audit, snapshot

from .ops_forms import CompileForm
from .staff import staff_json, viewer_reads_only

LIST_LIMIT = 50
LOG_TAIL_CHARS = 4000


def job_json(job: CompileJob) -> dict[str, Any]:
    duration = None
    if job.started_at:
        duration = round(((job.finished_at or job.heartbeat_at or job.started_at) - job.started_at).total_seconds(), 1)
    return {
        "id": job.pk, "model_version": str(job.model_version), "target": job.target, "options": job.options(),
        "status": job.status, "stage": job.stage, "percent": job.percent, "finished": job.is_finished,
        "error": job.error, "cache_hit": job.cache_hit, "attempts": job.attempts,
        "artifact": job.artifact.uri if job.artifact_id else None, "log": job.log[-LOG_TAIL_CHARS:],
        "created_at": job.created_at.isoformat(), "duration_s": duration,
    }


def recent_jobs(ids: list[int] | None = None) -> list[CompileJob]:
    jobs = CompileJob.objects.select_related("model_version__model", "artifact")
    if ids is not None:
        return list(jobs.filter(pk__in=ids))
    return list(jobs.order_by("-created_at")[:LIST_LIMIT])


@viewer_reads_only
def compile_jobs(request: HttpRequest) -> HttpResponse:
    initial = {}
    if request.GET.get("version", "").isdigit():
        initial["model_version"] = int(request.GET["version"])
    form = CompileForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        asked_at = timezone.now()
        try:
            job = request_compile(
                data["model_version"], data["target"], tp_degree=data["tp_degree"],
                batch_buckets=data["batch_buckets"], seq_len_buckets=data["seq_len_buckets"],
                dtype=data["dtype"] or None, quantization=data["quantization"], kernels=data["kernels"],
            )
        except LifecycleError as exc:
            form.add_error(None, str(exc))
        else:
            if job.created_at >= asked_at:
                record_audit(request.user, "create", job, {k: v for k, v in snapshot(job).items() if k != "log"})
                messages.success(request, f"Compile #{job.pk} of {job.model_version} for {job.target} is queued.")
            else:
                messages.info(request, f"An identical compile, #{job.pk}, is already {job.status}; follow it below.")
            return redirect("console:compile-jobs")
    status = 400 if request.method == "POST" else 200
    return render(request, "console/compile_jobs.html",
                  {"form": form, "jobs": recent_jobs(), "nav": "compile"}, status=status)


@never_cache
@staff_json
def compile_jobs_json(request: HttpRequest) -> JsonResponse:
    """Recent jobs, or those in ?ids=1,2,3."""
    raw = request.GET.get("ids")
    ids = None
    if raw is not None:
        parts = [p for p in raw.split(",") if p]
        if not all(p.isdigit() for p in parts):
            return JsonResponse({"error": "ids must be comma-separated job numbers"}, status=400)
        ids = [int(p) for p in parts]
    return JsonResponse({"jobs": [job_json(j) for j in recent_jobs(ids)]})
