from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("tenants", views.TenantViewSet)
router.register("api-keys", views.APIKeyViewSet)
router.register("usage-records", views.UsageRecordViewSet)
router.register("usage-rollups", views.UsageRollupViewSet)
router.register("audit-log", views.AuditLogViewSet)

app_name = "tenancy-api"
urlpatterns = router.urls
