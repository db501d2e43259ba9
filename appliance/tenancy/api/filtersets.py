from __future__ import annotations

import django_filters as filters

from appliance.api_filters import BooleanFilter, FilterSet, UTCDateTimeFilter

from ..models import APIKey, AuditLog, UsageRecord, UsageRollup


class UsageRecordFilterSet(FilterSet):
    tenant = filters.CharFilter(field_name="tenant__name", help_text="Tenant name")
    api_key = filters.CharFilter(field_name="api_key__prefix", help_text="API key prefix")
    model = filters.CharFilter(field_name="model_name", help_text="Model (deployment) name")
    since = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")
    date = filters.DateFilter(field_name="created_at", lookup_expr="date", help_text="Day (UTC), YYYY-MM-DD")

    class Meta:
        model = UsageRecord
        fields = ["tenant", "api_key", "model", "status_code", "endpoint", "request_id"]


class UsageRollupFilterSet(FilterSet):
    tenant = filters.CharFilter(field_name="tenant__name", help_text="Tenant name")
    api_key = filters.CharFilter(field_name="api_key__prefix", help_text="API key prefix")
    model = filters.CharFilter(field_name="model_name", help_text="Model (deployment) name")
    since = UTCDateTimeFilter(field_name="period_start", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="period_start", lookup_expr="lt")
    date = filters.DateFilter(field_name="period_start", lookup_expr="date", help_text="Day (UTC), YYYY-MM-DD")

    class Meta:
        model = UsageRollup
        fields = ["tenant", "api_key", "model"]


class APIKeyFilterSet(FilterSet):
    tenant = filters.CharFilter(field_name="tenant__name", help_text="Tenant name")
    revoked = BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = APIKey
        fields = ["tenant", "prefix", "name", "revoked"]


class AuditLogFilterSet(FilterSet):
    actor = filters.CharFilter(field_name="actor__username")
    since = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = ["actor", "action", "object_type", "object_id"]
