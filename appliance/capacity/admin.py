from django.contrib import admin, messages

from appliance.admin_base import AuditedModelAdmin

from .models import BenchmarkRun, InstancePrice


@admin.register(InstancePrice)
class InstancePriceAdmin(AuditedModelAdmin):
    list_display = ["instance_type", "hourly_usd", "note", "updated_at"]
    list_editable = ["hourly_usd"]
    search_fields = ["instance_type"]


@admin.register(BenchmarkRun)
class BenchmarkRunAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "profile", "concurrency_levels", "rate_levels", "status", "stage", "percent",
                    "created_at", "applied_at"]
    list_filter = ["status", "profile"]
    readonly_fields = ["status", "stage", "percent", "log", "error", "api_key", "celery_task_id", "results",
                       "applied_at", "created_at", "started_at", "finished_at"]
    actions = ["apply"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            from .services import enqueue

            enqueue(obj)

    @admin.action(description="Apply the recommendation as the deployment's autoscaling target")
    def apply(self, request, queryset):
        from .services import CapacityError, apply_recommendation

        for run in queryset:
            try:
                dep = apply_recommendation(run, actor=request.user)
                self.message_user(request, f"{dep.name}: target {dep.target_outstanding_per_replica} per replica, "
                                           f"up to {dep.max_replicas} replicas")
            except CapacityError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
