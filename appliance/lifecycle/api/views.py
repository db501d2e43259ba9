from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from appliance.api_base import AdminAPIMixin
from appliance.tenancy.audit import record_audit

from ..models import CompileJob
from ..services import LifecycleError, cancel_compile, request_compile
from .serializers import CompileJobSerializer


class CompileJobViewSet(AdminAPIMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                        viewsets.GenericViewSet):
    """Compile jobs: POST queues a compile (or returns a live identical one); GET reads progress, log and result."""

    queryset = CompileJob.objects.select_related("model_version__model").all()
    serializer_class = CompileJobSerializer
    filterset_fields = ["status", "target", "model_version", "cache_hit"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            job = request_compile(
                data["model_version"], data.get("target", "cpu"), tp_degree=data.get("tp_degree", 1),
                batch_buckets=data.get("batch_buckets"), seq_len_buckets=data.get("seq_len_buckets"),
                dtype=data.get("dtype"), quantization=data.get("quantization", "none"),
                kernels=data.get("kernels", False), kv_layout=data.get("kv_layout", ""),
            )
        except LifecycleError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        record_audit(request.user, "create", job, job.options())
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = cancel_compile(self.get_object())
        record_audit(request.user, "cancel", job, {"status": job.status})
        return Response(self.get_serializer(job).data)
