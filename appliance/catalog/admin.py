from django.contrib import admin

from appliance.admin_base import AuditedModelAdmin

from .models import Artifact, Deployment, Model, ModelVersion, Node, Pool, Replica


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ("version", "source_uri", "checksum", "context_length", "dtype", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Model)
class ModelAdmin(AuditedModelAdmin):
    list_display = ("name", "architecture", "family", "created_at")
    list_filter = ("family",)
    search_fields = ("name", "description", "architecture")
    inlines = [ModelVersionInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(AuditedModelAdmin):
    list_display = ("__str__", "model", "version", "context_length", "dtype", "checksum", "created_at")
    list_filter = ("model", "dtype")
    search_fields = ("model__name", "source_uri", "checksum")


@admin.register(Artifact)
class ArtifactAdmin(AuditedModelAdmin):
    list_display = ("digest", "model_version", "target", "size_bytes", "toolchain_version", "created_at")
    list_filter = ("target",)
    search_fields = ("digest", "uri")


@admin.register(Node)
class NodeAdmin(AuditedModelAdmin):
    list_display = ("name", "device", "instance_type", "chips", "cores", "address", "last_heartbeat")
    list_filter = ("device",)
    search_fields = ("name", "address")


@admin.register(Pool)
class PoolAdmin(AuditedModelAdmin):
    list_display = ("name", "node", "cores", "max_loaded_models", "memory_bytes", "evictions")
    list_filter = ("node",)
    search_fields = ("name",)


class ReplicaInline(admin.TabularInline):
    model = Replica
    fields = ("index", "node", "state", "cores", "port", "pid", "cold_start_s", "restart_count", "last_heartbeat")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Deployment)
class DeploymentAdmin(AuditedModelAdmin):
    list_display = ("name", "model_version", "device", "mode", "status", "min_replicas", "desired_replicas",
                    "max_replicas", "is_active", "last_request_at")
    list_filter = ("status", "device", "mode", "is_active")
    search_fields = ("name", "model_version__model__name")
    readonly_fields = ("status", "status_message", "last_request_at")
    inlines = [ReplicaInline]


@admin.register(Replica)
class ReplicaAdmin(AuditedModelAdmin):
    list_display = ("__str__", "node", "state", "port", "pid", "cold_start_s", "restart_count", "last_heartbeat")
    list_filter = ("state", "node")
    search_fields = ("deployment__name",)
