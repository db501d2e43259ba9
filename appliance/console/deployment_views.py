"""Console: deploy a model, a deployment's replicas and charts, and the nodes' inventory."""
from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from appliance.catalog.models import Deployment, Node, Replica
from appliance.lifecycle import placement
from appliance.lifecycle.conf import setting
from appliance.lifecycle.models import CompileJob
from appliance.lifecycle.services import LifecycleError, deploy
from appliance.tenancy.audit import diff, record_audit, snapshot

from . import series
from .ops_forms import DeployForm
from .staff import changes_required, staff_json, staff_required


def _with_replicas():
    return Deployment.objects.select_related("model_version__model", "pool", "artifact").prefetch_related(
        Prefetch("replicas", queryset=Replica.objects.select_related("node").order_by("index"))
    )


@staff_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    deployments = Deployment.objects.select_related("model_version__model", "pool").annotate(
        ready=Count("replicas", filter=Q(replicas__state=Replica.State.READY))
    )
    return render(request, "console/deployments.html", {"deployments": deployments, "nav": "deployments"})


def deploy_initial(model_name: str) -> dict:
    """The deploy form's starting values: the deployment's current settings when the model is deployed."""
    dep = Deployment.objects.select_related("pool").filter(name=model_name).first()
    if dep is None:
        return {"model": model_name}
    return {"model": model_name, "device": dep.device, "mode": dep.mode, "cores_per_replica": dep.cores_per_replica,
            "min_replicas": dep.min_replicas, "max_replicas": dep.max_replicas, "idle_timeout": dep.idle_timeout_s,
            "pool": dep.pool.name if dep.pool else ""}


@changes_required
def deployment_create(request: HttpRequest) -> HttpResponse:
    form = DeployForm(request.POST or None, initial=deploy_initial(request.GET.get("model", "")))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        name = data["model"].name
        existing = Deployment.objects.filter(name=name).first()
        before = snapshot(existing) if existing else None
        try:
            result = deploy(name, device=data["device"], mode=data["mode"],
                            cores_per_replica=data["cores_per_replica"], min_replicas=data["min_replicas"],
                            max_replicas=data["max_replicas"], idle_timeout=data["idle_timeout"],
                            pool=data["pool"] or None)
        except LifecycleError as exc:
            form.add_error(None, str(exc))
        else:
            dep = result.deployment
            if before is None:
                record_audit(request.user, "create", dep, snapshot(dep))
            elif changes := diff(before, snapshot(dep)):
                record_audit(request.user, "update", dep, changes)
            job = f" Compile #{result.compile_job.pk} is {result.compile_job.status}." if result.compile_job else ""
            plan = form.plan
            if plan is not None:
                job += (f" Neuron plan: tp_degree {plan.tp_degree}, {plan.graphs.total} graphs, host memory "
                        f"{plan.host.describe()}.")
            messages.success(request, f"Deployment {dep.name}: {result.message or dep.status}.{job}")
            return redirect("console:deployment-detail", name=dep.name)
    status = 400 if request.method == "POST" else 200
    return render(request, "console/deploy.html", {"form": form, "plan": form.plan, "nav": "deployments"},
                  status=status)


def scale_to_zero(dep: Deployment, now) -> dict | None:
    """What the scale-to-zero indicator says: None when the deployment never scales to zero, and when it failed or
    was stopped (it serves nothing and counts down to nothing: its status says why)."""
    if dep.min_replicas > 0 or dep.status in (Deployment.Status.FAILED, Deployment.Status.STOPPED):
        return None
    ready = sum(r.state == Replica.State.READY for r in dep.replicas.all())
    if dep.status == Deployment.Status.SCALED_TO_ZERO or (ready == 0 and dep.desired_replicas == 0):
        return {"state": "zero", "text": "Scaled to zero: the next request starts a replica (cold start)."}
    if dep.last_request_at is None:
        return {"state": "armed", "text": f"Scales to zero after {dep.idle_timeout_s} s without requests."}
    idle = (now - dep.last_request_at).total_seconds()
    left = max(dep.idle_timeout_s - idle, 0)
    return {"state": "armed", "idle_s": idle, "left_s": left,
            "text": f"Idle {idle:.0f} s; scales to zero in {left:.0f} s without requests "
                    f"(idle timeout {dep.idle_timeout_s} s)."}


@staff_required
def deployment_detail(request: HttpRequest, name: str) -> HttpResponse:
    dep = get_object_or_404(_with_replicas(), name=name)
    now = timezone.now()
    replicas = [r for r in dep.replicas.all() if r.state != Replica.State.STOPPED or r.restart_count]
    compile_jobs = dep.model_version.compile_jobs.filter(target=dep.device).order_by("-created_at")
    pending = compile_jobs.filter(status__in=[CompileJob.Status.QUEUED, CompileJob.Status.RUNNING]).first()
    return render(request, "console/deployment_detail.html", {
        "compile_pending": None if dep.artifact_id else pending,
        "dep": dep, "replicas": replicas, "zero": scale_to_zero(dep, now), "nav": "deployments",
        "windows": list(series.WINDOWS), "window": series.DEFAULT_WINDOW,
        "compile_jobs": compile_jobs[:5],
    })


@never_cache
@staff_json
def deployment_series(request: HttpRequest, name: str) -> JsonResponse:
    dep = Deployment.objects.filter(name=name).prefetch_related("replicas").first()
    if dep is None:
        return JsonResponse({"error": f"no deployment named {name!r}"}, status=404)
    data = series.deployment_series(dep, request.GET.get("window", series.DEFAULT_WINDOW))
    now = timezone.now()
    data["status"] = dep.status
    data["status_message"] = dep.status_message
    data["replicas"] = [{"index": r.index, "state": r.state, "cold_start_s": r.cold_start_s,
                         "restarts": r.restart_count} for r in dep.replicas.all()]
    data["scale_to_zero"] = scale_to_zero(dep, now)
    data["cold_starts"] = dep.cold_starts  # the last replica starts with their phases, kept after scale to zero
    return JsonResponse(data)


@staff_required
def node_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    stale = timedelta(seconds=setting("NODE_LOST_AFTER_S"))
    rows = []
    for node in Node.objects.order_by("name"):
        used = placement.used_cores(node) & set(range(node.cores))
        live = Replica.objects.filter(node=node).exclude(state=Replica.State.STOPPED).select_related("deployment")
        rows.append({
            "node": node, "used": len(used), "free": node.cores - len(used), "replicas": list(live),
            "memory_total": node.memory_per_core_bytes * node.cores,
            "alive": node.last_heartbeat is not None and now - node.last_heartbeat <= stale,
            "heartbeat_age_s": (now - node.last_heartbeat).total_seconds() if node.last_heartbeat else None,
            "detection": (node.inventory or {}).get("detection"),
            "inventory_error": (node.inventory or {}).get("error", ""),
        })
    return render(request, "console/nodes.html", {"rows": rows, "stale_s": int(stale.total_seconds()),
                                                  "nav": "nodes"})
