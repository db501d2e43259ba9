"""Console: the playground page (send a chat or a completion to any deployment, streamed into the page)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from appliance.catalog.models import Deployment

from .playground import KEY_TTL, issue_key
from .staff import staff_required


@staff_required
@never_cache
def playground(request: HttpRequest) -> HttpResponse:
    deployments = list(Deployment.objects.filter(is_active=True).select_related("model_version").order_by("name"))
    key, plaintext = issue_key(request.user)
    chosen = request.GET.get("model", "")
    return render(request, "console/playground.html", {
        "deployments": deployments, "chosen": chosen, "key": key, "plaintext": plaintext,
        "key_ttl_min": int(KEY_TTL.total_seconds() // 60), "nav": "playground",
        "api_base": request.build_absolute_uri("/v1"),
    })
