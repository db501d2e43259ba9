"""Read-only views of tenants' files, batches and async requests (they are created through /v1/ only)."""
from django.contrib import admin

from .models import AsyncRequest, Batch, File


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(File)
class FileAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "purpose", "filename", "bytes", "created_at")
    list_filter = ("purpose", "tenant")
    search_fields = ("id", "filename")


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "endpoint", "status", "total", "completed", "failed", "prompt_tokens",
                    "completion_tokens", "created_at", "completed_at")
    list_filter = ("status", "tenant")
    search_fields = ("id",)


@admin.register(AsyncRequest)
class AsyncRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "endpoint", "status", "status_code", "created_at", "finished_at")
    list_filter = ("status", "tenant")
    search_fields = ("id",)
