from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("policies", views.GuardrailPolicyViewSet)

app_name = "guardrails-api"
urlpatterns = router.urls
