"""Console: the hosting advisor (a spider chart of the five fitness functions per hosting option)."""
from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from appliance.catalog.models import Device, Model

from . import advisor
from .advisor_figures import gather
from .staff import staff_required


class AdvisorForm(forms.Form):
    model = forms.ModelChoiceField(queryset=Model.objects.order_by("name"), to_field_name="name")
    device = forms.ChoiceField(choices=[("", "the deployment's (else cpu)"), *Device.choices], required=False)
    isolation_required = forms.BooleanField(required=False, label="Isolation required",
                                            help_text="No other model may run on the tenant's cores")
    latency_slo_ms = forms.FloatField(label="Latency SLO (p95 TTFT, ms)", min_value=1, initial=1000)
    traffic = forms.ChoiceField(choices=[("steady", "steady"), ("spiky", "spiky (bursts)")], initial="steady")
    requests_per_min = forms.FloatField(label="Requests per minute (mean)", min_value=0, initial=10)
    tolerates_cold_start = forms.BooleanField(required=False, initial=True, label="Tolerates cold starts")
    tenants_sharing = forms.IntegerField(label="Models sharing a pool", min_value=1, initial=1,
                                         help_text="How many tenants' models would share the pool's cores")

    def needs(self) -> advisor.Needs:
        d = self.cleaned_data
        return advisor.Needs(isolation_required=d["isolation_required"], latency_slo_ms=d["latency_slo_ms"],
                             traffic=d["traffic"], requests_per_min=d["requests_per_min"],
                             tolerates_cold_start=d["tolerates_cold_start"], tenants_sharing=d["tenants_sharing"])


def advice_for(model: Model, needs: advisor.Needs, device: str | None = None) -> advisor.Advice:
    return advisor.advise(needs, gather(model, device or None))


@staff_required
def advisor_page(request: HttpRequest) -> HttpResponse:
    data = request.GET if "model" in request.GET else None
    first = Model.objects.order_by("name").first()
    form = AdvisorForm(data, initial={"model": first.name if first else None})
    advice, error = None, ""
    if form.is_bound and form.is_valid():
        try:
            advice = advice_for(form.cleaned_data["model"], form.needs(), form.cleaned_data["device"])
        except ValueError as exc:
            error = str(exc)
    status = 400 if form.is_bound and (form.errors or error) else 200
    return render(request, "console/advisor.html", {
        "form": form, "advice": advice, "advice_data": advice.to_dict() if advice else None, "error": error,
        "nav": "advisor",
    }, status=status)
