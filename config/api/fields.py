"""Serializer fields the apps' APIs share."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config import dates


@extend_schema_field(
    {
        "type": "string",
        "format": "date",
        "description": f"YYYY-MM-DD, from {dates.EARLIEST} to {dates.LATEST}.",
    }
)
class DateField(serializers.DateField):
    """A date within `config.dates`' range (400 naming the field otherwise)."""

    default_error_messages = {"out_of_range": dates.OUT_OF_RANGE}

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if not dates.in_range(day):
            self.fail("out_of_range")
        return day
