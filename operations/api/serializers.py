"""Query parameters of the export endpoints."""

from __future__ import annotations

from rest_framework import serializers

from config.api.fields import DateField
from config.api.serializers import QuerySerializer
from infra_costs.periods import WINDOWS
from operations.exports.formats import FORMATS


class ExportQuerySerializer(QuerySerializer):
    start = DateField(help_text="First day of the period (YYYY-MM-DD, local).")
    end = DateField(help_text="Day after the last one (exclusive).")
    window = serializers.ChoiceField(
        choices=WINDOWS,
        default="day",
        help_text="Cost windows of the unit-cost datasets (spec §3); ignored by the others.",
    )
    timezone = serializers.CharField(default="UTC", help_text="IANA time zone, e.g. Europe/Berlin.")
    format = serializers.ChoiceField(
        choices=FORMATS,
        required=False,
        help_text="csv or parquet, when the path has no `.csv`/`.parquet` suffix (default csv).",
    )
