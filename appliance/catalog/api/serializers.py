from __future__ import annotations

from rest_framework import serializers

from ..models import Artifact, Deployment, Model, ModelVersion, Node, Pool, Replica


class ModelSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Model
        fields = ["id", "name", "architecture", "family", "tool_parser", "description", "latest_version", "created_at"]
        read_only_fields = ["created_at"]

    def get_latest_version(self, model: Model) -> int | None:
        versions = [v.version for v in model.versions.all()]
        return max(versions) if versions else None


class RegisterModelSerializer(serializers.Serializer):
    """Register a Hugging Face-format checkpoint directory on this node as the next version of `name`."""

    name = serializers.SlugField(max_length=100)
    path = serializers.CharField(max_length=1000, help_text="Checkpoint directory on the appliance")
    tokenizer_uri = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.SlugRelatedField(slug_field="name", queryset=Model.objects.all())

    class Meta:
        model = ModelVersion
        fields = [
            "id", "model", "version", "source_uri", "checksum", "tokenizer_uri", "context_length", "dtype",
            "config", "has_chat_template", "created_at",
        ]
        read_only_fields = ["created_at"]


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = [
            "id", "digest", "model_version", "target", "uri", "size_bytes", "toolchain_version", "options",
            "created_at",
        ]


class NodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Node
        fields = [
            "id", "name", "device", "instance_type", "chips", "cores", "memory_per_core_bytes", "inventory",
            "address", "state", "state_changed_at", "last_heartbeat", "created_at",
        ]
        # state changes through the drain/undrain actions and the node agent's heartbeat, never a plain write
        read_only_fields = ["state", "state_changed_at", "last_heartbeat", "created_at"]


class PoolSerializer(serializers.ModelSerializer):
    node = serializers.SlugRelatedField(slug_field="name", queryset=Node.objects.all())

    class Meta:
        model = Pool
        fields = ["id", "name", "node", "cores", "max_loaded_models", "memory_bytes", "evictions"]
        read_only_fields = ["evictions"]


class DeploymentSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_version.model.name", read_only=True)
    pool = serializers.SlugRelatedField(slug_field="name", queryset=Pool.objects.all(), required=False,
                                        allow_null=True)
    ready_replicas = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "model", "model_version", "artifact", "device", "mode", "pool", "cores_per_replica",
            "min_replicas", "max_replicas", "desired_replicas", "idle_timeout_s", "target_outstanding_per_replica",
            "engine_args", "status", "status_message", "is_active", "ready_replicas", "last_request_at",
            "cold_starts", "created_at", "updated_at",
        ]
        read_only_fields = ["status", "status_message", "last_request_at", "cold_starts", "created_at", "updated_at"]

    def get_ready_replicas(self, deployment: Deployment) -> int:
        return sum(1 for r in deployment.replicas.all() if r.state == Replica.State.READY)

    def validate(self, attrs):
        merged = {f: getattr(self.instance, f) for f in ("min_replicas", "max_replicas")} if self.instance else {}
        merged.update({k: v for k, v in attrs.items() if k in ("min_replicas", "max_replicas")})
        low, high = merged.get("min_replicas", 1), merged.get("max_replicas", 1)
        if low > high:
            raise serializers.ValidationError({"max_replicas": "Must be at least min_replicas."})
        if attrs.get("cores_per_replica") == 0:
            raise serializers.ValidationError({"cores_per_replica": "Must be at least 1."})
        artifact = attrs.get("artifact")
        version = attrs.get("model_version") or (self.instance.model_version if self.instance else None)
        if artifact is not None and version is not None and artifact.model_version_id != version.pk:
            raise serializers.ValidationError({"artifact": "Belongs to another model version."})
        return attrs


class ReplicaSerializer(serializers.ModelSerializer):
    deployment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    node = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Replica
        fields = [
            "id", "deployment", "node", "index", "state", "cores", "host", "port", "socket_path", "pid",
            "started_at", "ready_at", "cold_start_s", "cold_start_phases", "last_heartbeat", "restart_count", "last_error", "created_at",
        ]
