from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("models", views.ModelViewSet)
router.register("model-versions", views.ModelVersionViewSet)
router.register("artifacts", views.ArtifactViewSet)
router.register("nodes", views.NodeViewSet)
router.register("pools", views.PoolViewSet)
router.register("deployments", views.DeploymentViewSet)
router.register("replicas", views.ReplicaViewSet)

app_name = "catalog-api"
urlpatterns = router.urls
