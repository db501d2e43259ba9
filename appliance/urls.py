"""Top-level routes.

/admin/        Django admin            /api/<app>/   admin REST API (staff only), /api/schema/ its OpenAPI schema
/v1/           OpenAI-compatible API   /metrics      Prometheus exposition       /  the console
/tokenize, /detokenize, /tokenizer_info   vLLM's tokenizer endpoints (API key, like /v1)
"""
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from appliance.gateway import views as gateway_views
from appliance.gateway import tokenizer_views

handler404 = "appliance.api_base.not_found"

ADMIN_API_APPS = ["tenancy", "catalog", "lifecycle", "jobs", "telemetry", "guardrails", "capacity"]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *[path(f"api/{app}/", include(f"appliance.{app}.api.urls")) for app in ADMIN_API_APPS],
    path("v1/", include("appliance.jobs.openai_urls")),
    path("v1/", include("appliance.gateway.urls")),
    path("tokenize", tokenizer_views.tokenize, name="tokenize"),
    path("detokenize", tokenizer_views.detokenize, name="detokenize"),
    path("tokenizer_info", tokenizer_views.tokenizer_info, name="tokenizer-info"),
    re_path(r"^v1/", gateway_views.unknown_route),  # last under /v1/: an OpenAI-shaped 404, not an HTML page
    path("", include("appliance.telemetry.urls")),
    path("", include("appliance.console.urls")),
]
