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

    def validate_duration_s(self, value: float) -> float:
        if not 0.5 <= value <= 120:
            raise serializers.ValidationError("must be between 0.5 and 120 seconds")
        return value
