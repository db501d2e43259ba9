from django.db import transaction
from rest_framework import mixins, viewsets

from appliance.api_base import AdminAPIMixin

from ..models import OccupancySample, ProfileJob
from .serializers import OccupancySampleSerializer, ProfileJobSerializer


class OccupancySampleViewSet(AdminAPIMixin, viewsets.ReadOnlyModelViewSet):
    """Occupancy time series; filter with ?replica=, ?node=, ?device=."""

    serializer_class = OccupancySampleSerializer

    def get_queryset(self):
        qs = OccupancySample.objects.all()
        for field in ("replica", "node", "device"):
            value = self.request.query_params.get(field)
            if value:
                qs = qs.filter(**{field: value})
        return qs


class ProfileJobViewSet(AdminAPIMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Profile a replica: create queues a Celery job; read its status, log and summary."""

    queryset = ProfileJob.objects.select_related("replica")
    serializer_class = ProfileJobSerializer

    def perform_create(self, serializer) -> None:
        from ..tasks import profile_replica

        job = serializer.save()
        transaction.on_commit(lambda: profile_replica.delay(job.id))
