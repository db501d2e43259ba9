from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from appliance.api_base import AdminModelViewSet, AdminReadOnlyViewSet, Conflict, refuse_coerced_types

from ..models import Artifact, Deployment, Model, ModelVersion, Node, Pool, Replica
from ..services import CheckpointError, register_model_version
from . import serializers


class ModelViewSet(AdminModelViewSet):
    queryset = Model.objects.prefetch_related("versions")
    serializer_class = serializers.ModelSerializer
    filterset_fields = ["name", "family", "architecture"]
    search_fields = ["name", "description"]

    @extend_schema(request=serializers.RegisterModelSerializer, responses={201: serializers.ModelVersionSerializer})
    @action(detail=False, methods=["post"])
    def register(self, request: Request) -> Response:
        """Register a checkpoint directory as the model's next version (creating the model if new)."""
        form = serializers.RegisterModelSerializer(data=request.data)
        refuse_coerced_types(form, request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            version, created = register_model_version(
                data["name"], data["path"], tokenizer_uri=data.get("tokenizer_uri", ""),
                description=data.get("description", ""), actor=request.user,
            )
        except CheckpointError as exc:
            raise ValidationError({"path": [str(exc)]}) from None
        except (OSError, RuntimeError) as exc:  # a name too long for the filesystem, ~user with no such user
            reason = getattr(exc, "strerror", None) or exc
            raise ValidationError({"path": [f"cannot read {data['path'][:200]!r}: {reason}"]}) from None
        body = serializers.ModelVersionSerializer(version).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ModelVersionViewSet(AdminModelViewSet):
    queryset = ModelVersion.objects.select_related("model")
    serializer_class = serializers.ModelVersionSerializer
    filterset_fields = ["model__name", "version", "dtype"]


class ArtifactViewSet(AdminReadOnlyViewSet):
    queryset = Artifact.objects.select_related("model_version__model").order_by("-created_at")
    serializer_class = serializers.ArtifactSerializer
    filterset_fields = ["target", "model_version", "digest"]


class NodeViewSet(AdminModelViewSet):
    queryset = Node.objects.order_by("name")
    serializer_class = serializers.NodeSerializer
    filterset_fields = ["name", "device", "state"]

    @extend_schema(request=None, responses={200: serializers.NodeSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def drain(self, request: Request, pk: str | None = None) -> Response:
        """Drain the node: its replicas start on other nodes, then stop here; nothing new is placed on it."""
        return self._set_draining(True)

    @extend_schema(request=None, responses={200: serializers.NodeSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def undrain(self, request: Request, pk: str | None = None) -> Response:
        """Make a draining node ready again: placement may use it."""
        return self._set_draining(False)

    def _set_draining(self, draining: bool) -> Response:
        from appliance.lifecycle import placement
        from appliance.lifecycle.node_state import NodeStateError, set_draining

        node = self.get_object()
        try:
            node = set_draining(node.name, draining)
        except NodeStateError as exc:
            raise Conflict(str(exc)) from None
        placement.place_all()
        return Response(serializers.NodeSerializer(node).data)


class PoolViewSet(AdminModelViewSet):
    queryset = Pool.objects.select_related("node").order_by("name")
    serializer_class = serializers.PoolSerializer
    filterset_fields = ["name", "node__name"]


class DeploymentViewSet(AdminModelViewSet):
    queryset = Deployment.objects.select_related("model_version__model", "pool").prefetch_related("replicas")
    serializer_class = serializers.DeploymentSerializer
    filterset_fields = ["name", "status", "device", "mode", "is_active", "model_version__model__name"]
    search_fields = ["name"]


class ReplicaViewSet(AdminReadOnlyViewSet):
    queryset = Replica.objects.select_related("deployment", "node")
    serializer_class = serializers.ReplicaSerializer
    filterset_fields = ["deployment__name", "node__name", "state"]
