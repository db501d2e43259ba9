from rest_framework import serializers

from appliance.catalog.models import ModelVersion

from ..models import CompileJob


class CompileJobSerializer(serializers.ModelSerializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    batch_buckets = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    seq_len_buckets = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    tp_degree = serializers.IntegerField(min_value=1, required=False, default=1)

    class Meta:
        model = CompileJob
        fields = ["id", "model_version", "target", "tp_degree", "batch_buckets", "seq_len_buckets", "dtype",
                  "quantization", "kernels", "kv_layout", "status", "stage", "percent", "log", "error", "cache_hit",
                  "digest", "artifact", "celery_task_id", "attempts", "created_at", "started_at", "finished_at"]
        read_only_fields = ["status", "stage", "percent", "log", "error", "cache_hit", "digest", "artifact",
                            "celery_task_id", "attempts", "created_at", "started_at", "finished_at"]
        extra_kwargs = {"dtype": {"required": False}}
