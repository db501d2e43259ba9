from rest_framework.routers import DefaultRouter

from .views import OccupancySampleViewSet, ProfileJobViewSet

router = DefaultRouter()
router.register("samples", OccupancySampleViewSet, basename="occupancy-sample")
router.register("profiles", ProfileJobViewSet)

urlpatterns = router.urls
