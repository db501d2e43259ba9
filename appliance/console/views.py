"""Console pages (staff only): dashboard, tenants and keys, models and versions, usage."""
from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from appliance.catalog.models import Deployment, Model
from appliance.catalog.services import CheckpointError, register_model_version
from appliance.tenancy.audit import diff, record_audit, snapshot
from appliance.tenancy.models import APIKey, Tenant, UsageRecord
from appliance.tenancy.services import create_api_key, create_tenant, revoke_api_key
from appliance.tenancy.usage import month_start, month_tokens

from . import live, usage_report
from .prices import price_table
from .forms import APIKeyForm, RegisterModelForm, StaffLoginForm, TenantForm
from .staff import changes_required, staff_required

QUOTAS = ("rpm", "tpm", "max_concurrency", "monthly_tokens")


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = StaffLoginForm
    redirect_authenticated_user = True


@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "console/dashboard.html", {"data": live.snapshot(), "nav": "dashboard"})


@never_cache
def live_json(request: HttpRequest) -> JsonResponse:
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"error": "staff login required"}, status=403)
    return JsonResponse(live.snapshot())


@staff_required
def tenant_list(request: HttpRequest) -> HttpResponse:
    tenants = Tenant.objects.annotate(
        active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
    ).prefetch_related("allowed_models")
    start = month_start()
    used = dict(
        UsageRecord.objects.filter(created_at__gte=start).values_list("tenant_id")
        .annotate(t=Sum("prompt_tokens") + Sum("completion_tokens"))
    )
    rows = [(t, used.get(t.pk, 0)) for t in tenants]
    return render(request, "console/tenants.html", {"rows": rows, "nav": "tenants"})


@changes_required
def tenant_create(request: HttpRequest) -> HttpResponse:
    form = TenantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            tenant = create_tenant(
                data["name"], display_name=data["display_name"],
                models=None if data["all_models"] else [m.name for m in data["allowed_models"]],
                is_active=data["is_active"], actor=request.user, **{q: data[q] for q in QUOTAS},
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Tenant {tenant.name} created. Create an API key for it below.")
            return redirect("console:tenant-detail", name=tenant.name)
    return render(request, "console/tenant_form.html", {"form": form, "nav": "tenants"})


@changes_required
def tenant_edit(request: HttpRequest, name: str) -> HttpResponse:
    tenant = get_object_or_404(Tenant, name=name)
    form = TenantForm(request.POST or None, instance=tenant)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            before = snapshot(Tenant.objects.get(pk=tenant.pk))
            tenant = form.save()
            changes = diff(before, snapshot(tenant))
            if changes:
                record_audit(request.user, "update", tenant, changes)
        messages.success(request, f"Tenant {tenant.name} saved.")
        return redirect("console:tenant-detail", name=tenant.name)
    return render(request, "console/tenant_form.html", {"form": form, "tenant": tenant, "nav": "tenants"})


@staff_required
def tenant_detail(request: HttpRequest, name: str) -> HttpResponse:
    tenant = get_object_or_404(Tenant.objects.prefetch_related("allowed_models"), name=name)
    form = APIKeyForm(tenant)
    return render(request, "console/tenant_detail.html", _tenant_context(tenant, form))


def _tenant_context(tenant: Tenant, form: APIKeyForm) -> dict:
    keys = tenant.api_keys.prefetch_related("allowed_models").order_by("-created_at")
    now = timezone.now()
    return {
        "tenant": tenant, "keys": keys, "form": form, "now": now, "nav": "tenants",
        "month_tokens": month_tokens(tenant),
        "recent": UsageRecord.objects.filter(tenant=tenant).select_related("api_key").order_by("-created_at")[:20],
    }


@changes_required
@never_cache
@require_POST
def key_create(request: HttpRequest, name: str) -> HttpResponse:
    tenant = get_object_or_404(Tenant, name=name)
    form = APIKeyForm(tenant, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            key, plaintext = create_api_key(
                tenant, name=data["name"], expires_at=form.expires_at(), allowed_models=list(data["allowed_models"]),
                actor=request.user, **{q: data[q] for q in QUOTAS},
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return render(request, "console/key_created.html",
                          {"tenant": tenant, "key": key, "plaintext": plaintext, "nav": "tenants"})
    return render(request, "console/tenant_detail.html", _tenant_context(tenant, form), status=400)


@changes_required
@require_POST
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(APIKey.objects.select_related("tenant"), pk=pk)
    revoke_api_key(key, actor=request.user)
    messages.success(request, f"Key {key.prefix} revoked.")
    return redirect("console:tenant-detail", name=key.tenant.name)


@staff_required
def model_list(request: HttpRequest) -> HttpResponse:
    models = Model.objects.prefetch_related("versions").annotate(n_versions=Count("versions"))
    return render(request, "console/models.html", {"models": models, "nav": "models"})


@changes_required
def model_register(request: HttpRequest) -> HttpResponse:
    form = RegisterModelForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version, created = register_model_version(
                data["name"], data["path"], description=data["description"], actor=request.user
            )
        except CheckpointError as exc:
            form.add_error("path", str(exc))
        except (OSError, RuntimeError) as exc:  # a name too long for the filesystem, ~user with no such user
            form.add_error("path", f"cannot read that path: {getattr(exc, 'strerror', None) or exc}")
        else:
            verb = "Registered" if created else "Already registered with the same weights:"
            messages.success(request, f"{verb} {version} ({version.model.architecture}, "
                                      f"context {version.context_length}).")
            return redirect("console:model-detail", name=version.model.name)
    return render(request, "console/model_register.html", {"form": form, "nav": "models"})


@staff_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(Model, name=name)
    versions = model.versions.order_by("-version")
    deployments = Deployment.objects.filter(model_version__model=model).select_related("model_version")
    tenants = Tenant.objects.filter(Q(all_models=True) | Q(allowed_models=model)).distinct()
    return render(request, "console/model_detail.html", {
        "model": model, "versions": versions, "deployments": deployments, "tenants": tenants, "nav": "models",
    })


USAGE_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
                 "30d": timedelta(days=30)}


@staff_required
def usage(request: HttpRequest) -> HttpResponse:
    window = request.GET.get("window", "24h")
    window = window if window in USAGE_WINDOWS else "24h"
    tenant_name = request.GET.get("tenant", "")
    now = timezone.now()
    since = now - USAGE_WINDOWS[window]
    records = UsageRecord.objects.filter(created_at__gte=since)
    if tenant_name:
        records = records.filter(tenant__name=tenant_name)
    by_model = usage_report.usage_rows(records, since, now)
    by_key = usage_report.usage_rows(records, since, now, by_key=True)
    start = month_start()
    month = []
    for tenant in Tenant.objects.filter(name=tenant_name) if tenant_name else Tenant.objects.all():
        used = month_tokens(tenant, at=start)
        budget = tenant.monthly_tokens
        month.append({"tenant": tenant, "used": used, "budget": budget,
                      "percent": round(100 * used / budget, 1) if budget else None})
    return render(request, "console/usage.html", {
        "by_model": by_model, "by_key": by_key, "totals": usage_report.totals(by_model), "month": month,
        "window": window, "windows": list(USAGE_WINDOWS), "over_time": usage_report.over_time(records, window, since,
                                                                                            now),
        "tenant_name": tenant_name, "tenants": Tenant.objects.values_list("name", flat=True),
        "month_start": start, "prices": price_table(), "nav": "usage",
    })
