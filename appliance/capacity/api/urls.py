from rest_framework.routers import DefaultRouter

from .views import BenchmarkRunViewSet, InstancePriceViewSet

router = DefaultRouter()
router.register("benchmark-runs", BenchmarkRunViewSet, basename="benchmark-run")
router.register("prices", InstancePriceViewSet, basename="instance-price")

urlpatterns = router.urls
