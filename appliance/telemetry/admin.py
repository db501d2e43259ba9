from django.contrib import admin

from .models import OccupancySample, ProfileJob


@admin.register(OccupancySample)
class OccupancySampleAdmin(admin.ModelAdmin):
    list_display = ("created_at", "node", "device", "core", "replica", "utilization_pct", "memory_bytes")
    list_filter = ("device", "node")
    date_hierarchy = "created_at"


@admin.register(ProfileJob)
class ProfileJobAdmin(admin.ModelAdmin):
    list_display = ("id", "replica", "status", "stage", "duration_s", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = ("log", "summary", "output_dir", "error", "started_at", "finished_at")
