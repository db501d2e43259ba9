from rest_framework import serializers

from appliance.catalog.models import Deployment

from ..models import BenchmarkRun, InstancePrice


class InstancePriceSerializer(serializers.ModelSerializer):
    # a JSON number (a decimal string's schema pattern admits "", which is no price); stored rounded to 4 places
    hourly_usd = serializers.FloatField(min_value=0, max_value=999999)

    class Meta:
        model = InstancePrice
        fields = ["id", "instance_type", "hourly_usd", "note", "updated_at"]


class BenchmarkRunSerializer(serializers.ModelSerializer):
    deployment = serializers.SlugRelatedField(slug_field="name", queryset=Deployment.objects.all())

    class Meta:
        model = BenchmarkRun
        fields = ["id", "deployment", "concurrency_levels", "rate_levels", "burstiness", "profile", "prompts_path",
                  "input_tokens", "output_tokens", "requests_per_level", "duration_s", "ttft_slo_s", "itl_slo_s",
                  "max_error_rate", "instance_type", "gateway_url", "status", "stage", "percent", "log", "error",
                  "results", "applied_at", "created_at", "started_at", "finished_at"]
        read_only_fields = ["status", "stage", "percent", "log", "error", "results", "applied_at", "created_at",
                            "started_at", "finished_at"]
