from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from appliance.api_base import AdminAPIMixin, AuditedWritesMixin
from appliance.tenancy.audit import record_audit

from ..models import BenchmarkRun, InstancePrice
from ..services import CapacityError, apply_recommendation, create_run, enqueue
from .serializers import BenchmarkRunSerializer, InstancePriceSerializer


class InstancePriceViewSet(AdminAPIMixin, AuditedWritesMixin, viewsets.ModelViewSet):
    """Hourly prices per instance type, used for the cost per million tokens."""

    queryset = InstancePrice.objects.all()
    serializer_class = InstancePriceSerializer
    filterset_fields = ["instance_type"]


class BenchmarkRunViewSet(AdminAPIMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                          viewsets.GenericViewSet):
    """Benchmark runs: POST queues one; GET reads progress, log and results; POST …/apply/ applies the
    recommendation as the deployment's autoscaling target."""

    queryset = BenchmarkRun.objects.select_related("deployment").all()
    serializer_class = BenchmarkRunSerializer
    filterset_fields = ["status", "deployment", "profile"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            run = create_run(data.pop("deployment"), concurrency=data.pop("concurrency_levels", None),
                             rates=data.pop("rate_levels", None), profile=data.pop("profile", "qa"),
                             requests=data.pop("requests_per_level", None), duration_s=data.pop("duration_s", None),
                             **data)
        except CapacityError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        enqueue(run)
        record_audit(request.user, "create", run, {"deployment": run.deployment.name})
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def apply(self, request, pk=None):
        try:
            dep = apply_recommendation(self.get_object(), actor=request.user)
        except CapacityError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"deployment": dep.name, "target_outstanding_per_replica": dep.target_outstanding_per_replica,
                         "max_replicas": dep.max_replicas})
