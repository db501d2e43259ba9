from appliance.api_base import AdminModelViewSet

from ..models import GuardrailPolicy
from . import serializers


class GuardrailPolicyViewSet(AdminModelViewSet):
    queryset = GuardrailPolicy.objects.select_related("tenant", "deployment").order_by("id")
    serializer_class = serializers.GuardrailPolicySerializer
    filterset_fields = ["tenant__name", "deployment__name"]
