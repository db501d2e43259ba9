from django.contrib.auth.views import LogoutView
from django.urls import path

from . import advisor_views, benchmark_views, compile_views, deployment_views, playground_views, views

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("console/live.json", views.live_json, name="live"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(next_page="console:login"), name="logout"),
    path("tenants/", views.tenant_list, name="tenants"),
    path("tenants/new/", views.tenant_create, name="tenant-create"),
    path("tenants/<slug:name>/", views.tenant_detail, name="tenant-detail"),
    path("tenants/<slug:name>/edit/", views.tenant_edit, name="tenant-edit"),
    path("tenants/<slug:name>/keys/", views.key_create, name="key-create"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("models/", views.model_list, name="models"),
    path("models/register/", views.model_register, name="model-register"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("usage/", views.usage, name="usage"),
    path("compile/", compile_views.compile_jobs, name="compile-jobs"),
    path("compile/jobs.json", compile_views.compile_jobs_json, name="compile-jobs-json"),
    path("deployments/", deployment_views.deployment_list, name="deployments"),
    path("deployments/new/", deployment_views.deployment_create, name="deploy"),
    path("deployments/<slug:name>/", deployment_views.deployment_detail, name="deployment-detail"),
    path("deployments/<slug:name>/series.json", deployment_views.deployment_series, name="deployment-series"),
    path("nodes/", deployment_views.node_list, name="nodes"),
    path("playground/", playground_views.playground, name="playground"),
    path("advisor/", advisor_views.advisor_page, name="advisor"),
    path("benchmarks/", benchmark_views.benchmark_list, name="benchmarks"),
    path("benchmarks/<int:pk>/", benchmark_views.benchmark_detail, name="benchmark-detail"),
    path("benchmarks/<int:pk>/results.json", benchmark_views.benchmark_json, name="benchmark-json"),
    path("benchmarks/<int:pk>/results.csv", benchmark_views.benchmark_csv, name="benchmark-csv"),
    path("benchmarks/<int:pk>/apply/", benchmark_views.benchmark_apply, name="benchmark-apply"),
]
