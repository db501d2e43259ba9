from rest_framework import serializers

from ..models import OccupancySample, ProfileJob


class OccupancySampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = OccupancySample
        fields = ["id", "node", "replica", "device", "core", "utilization_pct", "memory_bytes", "extra", "created_at"]


class ProfileJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProfileJob
        fields = [
            "id", "replica", "duration_s", "status", "stage", "log", "error", "output_dir", "summary",
            "created_at", "started_at", "finished_at",
        ]
        read_only_fields = [f for f in fields if f not in ("replica", "duration_s")]
        extra_kwargs = {"duration_s": {"min_value": 0.5, "max_value": 120}}
