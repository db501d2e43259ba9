from django.contrib import admin

from .models import CompileJob


@admin.register(CompileJob)
class CompileJobAdmin(admin.ModelAdmin):
    list_display = ["id", "model_version", "target", "dtype", "status", "stage", "percent", "cache_hit", "attempts",
                    "created_at", "finished_at"]
    list_filter = ["status", "target", "cache_hit"]
    search_fields = ["model_version__model__name", "digest", "celery_task_id"]
    readonly_fields = ["status", "stage", "percent", "log", "error", "cache_hit", "digest", "artifact",
                       "celery_task_id", "worker", "attempts", "created_at", "started_at", "finished_at",
                       "heartbeat_at"]
    actions = ["requeue"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            from .services import enqueue_compile

            enqueue_compile(obj)

    @admin.action(description="Queue the selected jobs' options again")
    def requeue(self, request, queryset):
        from .services import request_compile

        for job in queryset:
            o = job.options()
            request_compile(job.model_version, job.target, tp_degree=o["tp_degree"], batch_buckets=o["batch_buckets"],
                            seq_len_buckets=o["seq_len_buckets"], dtype=o["dtype"], quantization=o["quantization"],
                            kernels=o["kernels"], kv_layout=o.get("kv_layout", ""))
