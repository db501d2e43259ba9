"""Console: benchmark runs. The list with a form that queues a run, a run's page with its per-level table and plots
(drawn in the browser by benchmark.js from the run's results, embedded as JSON), a second run overlaid with
?compare=<id>, downloads as JSON and CSV, and the button that applies the recommendation as the deployment's
autoscaling target (the same service as the admin API's apply/ action)."""
from __future__ import annotations

import csv
import io
import json

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from appliance.capacity.models import BenchmarkRun
from appliance.capacity.profiles import PRESETS
from appliance.capacity.report import contract_json
from appliance.capacity.services import CapacityError, apply_recommendation, create_run, enqueue
from appliance.catalog.models import Deployment
from appliance.tenancy.audit import record_audit

from .staff import changes_required, staff_required, viewer_reads_only

LIST_LIMIT = 100
# CSV columns in this order (the documented per-level figures); any other key a level has follows them.
CSV_FIELDS = [
    "concurrency", "rate", "arrival", "requests", "succeeded", "errors", "errors_rate_limited", "errors_failed",
    "stopped_early", "duration_s", "ttft_p50", "ttft_p90", "ttft_p99", "itl_p50", "itl_p90", "itl_p99", "e2e_p50",
    "e2e_p90", "e2e_p99", "input_tokens", "output_tokens", "output_tok_s", "requests_per_s", "mean_in_flight",
    "goodput", "goodput_rps", "mean_batch_size", "kv_use", "core_utilization", "cost_per_million_output_tokens",
]


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise forms.ValidationError("comma-separated whole numbers, e.g. 1,4,16") from None
    if not levels or any(level < 1 for level in levels):
        raise forms.ValidationError("give at least one level, each 1 or more")
    return levels


class BenchmarkForm(forms.Form):
    deployment = forms.ModelChoiceField(queryset=Deployment.objects.order_by("name"), to_field_name="name")
    concurrency = forms.CharField(label="Concurrency levels", initial="1,4,16",
                                  help_text="Closed-loop: requests in flight at once, one level after another")
    profile = forms.ChoiceField(choices=[(c, label) for c, label in BenchmarkRun.Profile.choices if c in PRESETS],
                                initial="qa")
    requests = forms.IntegerField(label="Requests per level", min_value=1, max_value=100000, initial=32)
    ttft_slo_s = forms.FloatField(label="TTFT SLO (s)", min_value=0.001, initial=2.0)
    itl_slo_s = forms.FloatField(label="ITL SLO (s)", min_value=0.001, initial=0.2,
                                 help_text="200 ms is a human reading speed")

    def clean_concurrency(self) -> list[int]:
        return parse_levels(self.cleaned_data["concurrency"])


def level_name(level: dict) -> str:
    if level.get("concurrency") is not None:
        return f"concurrency {level['concurrency']}"
    return f"rate {level.get('rate')}/s"


@viewer_reads_only
def benchmark_list(request: HttpRequest) -> HttpResponse:
    initial = {"deployment": request.GET.get("deployment") or None}
    form = BenchmarkForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            run = create_run(d["deployment"], concurrency=d["concurrency"], profile=d["profile"],
                             requests=d["requests"], ttft_slo_s=d["ttft_slo_s"], itl_slo_s=d["itl_slo_s"])
        except CapacityError as exc:
            form.add_error(None, str(exc))
        else:
            enqueue(run)
            record_audit(request.user, "create", run, {"deployment": run.deployment.name})
            messages.success(request, f"Benchmark run {run.pk} queued on {run.deployment.name}.")
            return redirect("console:benchmark-detail", pk=run.pk)
    runs = list(BenchmarkRun.objects.select_related("deployment")[:LIST_LIMIT])
    return render(request, "console/benchmarks.html", {
        "form": form, "runs": runs, "nav": "benchmarks",
    }, status=400 if form.is_bound and form.errors else 200)


def _compare_run(request: HttpRequest, run: BenchmarkRun) -> BenchmarkRun | None:
    raw = request.GET.get("compare", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise Http404("compare must be a run id")
    other = get_object_or_404(BenchmarkRun.objects.select_related("deployment"), pk=int(raw))
    return None if other.pk == run.pk else other


def chart_data(run: BenchmarkRun) -> dict:
    """What the page's plots draw for one run: its id, a label, its SLOs and its levels as stored."""
    results = run.results or {}
    config = results.get("config", {})
    slo = config.get("slo") or {"ttft_s": run.ttft_slo_s, "itl_s": run.itl_slo_s}
    label = (f"run {run.pk}: {run.deployment.name}, {config.get('replicas', '?')} replica(s) x "
             f"{config.get('cores_per_replica', '?')} core(s)")
    return {"id": run.pk, "label": label, "slo": slo, "levels": results.get("levels", [])}


@staff_required
def benchmark_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BenchmarkRun.objects.select_related("deployment"), pk=pk)
    compare = _compare_run(request, run)
    others = BenchmarkRun.objects.select_related("deployment").filter(
        status=BenchmarkRun.Status.SUCCEEDED).exclude(pk=run.pk)[:LIST_LIMIT]
    results = run.results or {}
    rec = results.get("recommendation") or {}
    data = {"runs": [chart_data(run)] + ([chart_data(compare)] if compare else [])}
    return render(request, "console/benchmark_detail.html", {
        "run": run, "compare": compare, "others": others, "config": results.get("config", {}),
        "levels": [{**level, "name": level_name(level)} for level in results.get("levels", [])],
        "rec": rec, "can_apply": run.status == BenchmarkRun.Status.SUCCEEDED and rec.get("meets_slo"),
        "bench_data": data, "nav": "benchmarks",
    })


@staff_required
def benchmark_json(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BenchmarkRun, pk=pk)
    body = json.dumps({"run": run.pk, **contract_json(run.results or {}), "status": run.status}, indent=2)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="benchmark-{run.pk}.json"'
    return response


@staff_required
def benchmark_csv(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BenchmarkRun, pk=pk)
    levels = (run.results or {}).get("levels", [])
    extra = [k for level in levels for k in level if k not in CSV_FIELDS]
    fields = [f for f in CSV_FIELDS if any(f in level for level in levels)] + list(dict.fromkeys(extra))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields or CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for level in levels:
        writer.writerow({k: "" if level.get(k) is None else level[k] for k in fields})
    response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="benchmark-{run.pk}.csv"'
    return response


@require_POST
@changes_required
def benchmark_apply(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BenchmarkRun.objects.select_related("deployment"), pk=pk)
    try:
        dep = apply_recommendation(run, actor=request.user)
    except CapacityError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Deployment {dep.name} now targets {dep.target_outstanding_per_replica} "
                                  f"requests in flight per replica, up to {dep.max_replicas} replica(s).")
    return redirect("console:benchmark-detail", pk=run.pk)
