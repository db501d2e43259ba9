"""Strict query parameters for the admin API: a parameter given with no value, or with a value its type cannot hold,
is a 400 that names it. (django-filter and DRF's pagination ignore such values, as an HTML form's empty field; the
published schema says what each parameter takes, so the API holds callers to it.)"""
from __future__ import annotations

from datetime import datetime, timezone

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError as APIValidationError
from rest_framework.pagination import LimitOffsetPagination


class StrictBooleanField(forms.NullBooleanField):
    def to_python(self, value):
        text = str(value).lower() if value is not None else ""
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        if text:
            raise ValidationError("Use true or false.")
        return None


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", forms.TextInput)  # django-filter's select widgets read any other value as "unset"
        super().__init__(*args, **kwargs)


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 time bound compared in UTC. ISO 8601 allows offsets up to ±23:59, PostgreSQL only ±15:59; a bound
    before year 1 or after 9999 in UTC is clamped to the range Python (and so every stored row) can hold."""

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(timezone.utc)
            except OverflowError:
                value = (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=timezone.utc)
        return super().filter(qs, value)


INTEGER_FIELDS = (models.AutoField, models.BigAutoField, models.IntegerField, models.BigIntegerField,
                  models.SmallIntegerField, models.PositiveIntegerField, models.PositiveSmallIntegerField,
                  models.PositiveBigIntegerField)


class FilterSet(django_filters.FilterSet):
    """The project's FilterSet: integers are integers, booleans true/false, times compared in UTC, and a parameter
    that is not text, given empty, is refused."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        **{f: {"filter_class": IntegerFilter} for f in INTEGER_FIELDS},
        models.BooleanField: {"filter_class": BooleanFilter},
        models.DateTimeField: {"filter_class": UTCDateTimeFilter},
    }

    def is_valid(self) -> bool:
        valid = self.form.is_valid()
        for name in self.filters:
            text = isinstance(self.filters[name].field, forms.CharField)
            if not text and name in self.data and self.data.get(name) == "":
                self.form.add_error(name, "Give a value, or leave the parameter out.")
                valid = False
        return valid


class FilterBackend(DjangoFilterBackend):
    filterset_base = FilterSet


class Pagination(LimitOffsetPagination):
    """limit/offset, refusing a value that is not a whole number (DRF's own falls back to the default)."""

    def get_limit(self, request):
        self._require_integer(request, self.limit_query_param)
        return super().get_limit(request)

    def get_offset(self, request):
        self._require_integer(request, self.offset_query_param)
        return super().get_offset(request)

    @staticmethod
    def _require_integer(request, name: str) -> None:
        values = request.query_params.getlist(name)
        if any(not v.lstrip("-").isdigit() for v in values):
            raise APIValidationError({name: ["A whole number is required."]})
