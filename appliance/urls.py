"""Top-level routes.

/admin/        Django admin            /api/<app>/   admin REST API (staff only), /api/schema/ its OpenAPI schema
/v1/           OpenAI-compatible API   /metrics      Prometheus exposition       /  the console
"""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

ADMIN_API_APPS = ["tenancy", "catalog", "lifecycle", "jobs", "telemetry"]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *[path(f"api/{app}/", include(f"appliance.{app}.api.urls")) for app in ADMIN_API_APPS],
    path("v1/", include("appliance.jobs.openai_urls")),
    path("v1/", include("appliance.gateway.urls")),
    path("", include("appliance.telemetry.urls")),
    path("", include("appliance.console.urls")),
]
