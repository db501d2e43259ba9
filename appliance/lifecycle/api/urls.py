from rest_framework.routers import DefaultRouter

from .views import CompileJobViewSet

router = DefaultRouter()
router.register("compile-jobs", CompileJobViewSet, basename="compile-job")

urlpatterns = router.urls
