"""Shapes of the infra-costs API, for validation of query parameters and for the OpenAPI
schema. Import rows are validated by `infra_costs.imports` itself (same rules and messages as
the CSV commands), so the row serializers here only document them."""

from __future__ import annotations

from rest_framework import serializers

from config.api.fields import DateField
from config.api.serializers import QuerySerializer
from infra_costs.allocation import IDLE_POLICIES
from infra_costs.models import TERMINAL_RUN_STATUSES
from infra_costs.periods import WINDOWS

USD = "Decimal string, 6 decimal places."
HOURS = "Hours, decimal string, 6 decimal places."


class UnitCostsQuerySerializer(QuerySerializer):
    start = DateField(help_text="First day of the period (YYYY-MM-DD, local).")
    end = DateField(help_text="Day after the last one (exclusive).")
    window = serializers.ChoiceField(choices=WINDOWS, default="day")
    idle_policy = serializers.ChoiceField(choices=IDLE_POLICIES, default="weighted")
    timezone = serializers.CharField(default="UTC", help_text="IANA time zone, e.g. Europe/Berlin.")


class ImportQuerySerializer(QuerySerializer):
    skip_invalid = serializers.BooleanField(
        default=False,
        help_text="Import the good rows and report the bad ones instead of refusing the batch.",
    )


class PoolRowSerializer(serializers.Serializer):
    pool = serializers.SlugField()
    gpu_type = serializers.CharField()
    hourly_rate_usd = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=0)
    effective_from = serializers.DateTimeField(help_text="ISO 8601 with offset.")


class UptimeRowSerializer(serializers.Serializer):
    node = serializers.CharField()
    pool = serializers.SlugField()
    started_at = serializers.DateTimeField(help_text="ISO 8601 with offset.")
    ended_at = serializers.DateTimeField(help_text="ISO 8601 with offset; after started_at.")


class JobRowSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    model = serializers.SlugField()
    node = serializers.CharField(help_text="An existing node (imported with its uptime).")
    started_at = serializers.DateTimeField(help_text="ISO 8601 with offset.")
    finished_at = serializers.DateTimeField(help_text="ISO 8601 with offset; after started_at.")
    status = serializers.ChoiceField(choices=list(TERMINAL_RUN_STATUSES))


class ImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField(help_text="Rows written.")
    already_present = serializers.IntegerField(help_text="Rows already there (same data).")
    invalid = serializers.IntegerField(help_text="Rows skipped (only with skip_invalid).")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Reasons per row index of the skipped rows.",
    )


class PeriodSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    start_at = serializers.DateTimeField()
    end_at = serializers.DateTimeField()
    timezone = serializers.CharField()
    window = serializers.CharField()
    windows = serializers.IntegerField()
    idle_policy = serializers.CharField()


class PoolCostSerializer(serializers.Serializer):
    pool = serializers.CharField()
    uptime_hours = serializers.CharField(help_text=HOURS)
    busy_hours = serializers.CharField(help_text=HOURS)
    idle_hours = serializers.CharField(help_text=HOURS)
    idle_fraction = serializers.CharField(allow_null=True, help_text="idle / uptime.")
    cost_usd = serializers.CharField(help_text=USD)
    allocated_usd = serializers.CharField(help_text=USD)
    unallocated_usd = serializers.CharField(help_text=USD)


class StageLineSerializer(serializers.Serializer):
    model = serializers.CharField()
    stage = serializers.CharField(help_text="The stage's name.")
    generations = serializers.IntegerField()
    kind = serializers.CharField(help_text="cpu (CPU seconds at a CPU rate) or fixed.")
    cpu_seconds_per_generation = serializers.CharField(allow_null=True, help_text="cpu only.")
    cpu_hourly_usd = serializers.CharField(allow_null=True, help_text="cpu only. " + USD)
    usd_per_generation = serializers.CharField(help_text=USD)
    cost_usd = serializers.CharField(help_text="usd_per_generation × generations. " + USD)


class ModelCostSerializer(serializers.Serializer):
    model = serializers.CharField()
    generations = serializers.IntegerField()
    failed = serializers.IntegerField()
    gpu_hours = serializers.CharField(help_text=HOURS)
    active_cost_usd = serializers.CharField(help_text=USD)
    allocated_cost_usd = serializers.CharField(help_text=USD)
    fully_loaded_cost_usd = serializers.CharField(help_text=USD)
    external_cost_usd = serializers.CharField(help_text=USD)
    stage_cost_usd = serializers.CharField(
        help_text="Extra pipeline stages (CPU, fixed) × generations; not infrastructure. " + USD
    )
    cost_per_generation_usd = serializers.CharField(
        allow_null=True, help_text="(fully loaded + external + stages) / generations. " + USD
    )
    active_cost_per_generation_usd = serializers.CharField(
        allow_null=True, help_text="(active + external + stages) / generations. " + USD
    )


class TotalsSerializer(serializers.Serializer):
    infra_cost_usd = serializers.CharField(help_text=USD)
    generations = serializers.IntegerField()
    unattributed_usd = serializers.CharField(help_text=USD)
    weighted_avg_cost_per_generation_usd = serializers.CharField(allow_null=True)
    idle_fraction = serializers.CharField(allow_null=True)
    external_cost_usd = serializers.CharField(help_text="Not infrastructure. " + USD)
    stage_cost_usd = serializers.CharField(help_text="Not infrastructure. " + USD)


class IdleLineSerializer(serializers.Serializer):
    pool = serializers.CharField()
    idle_hours = serializers.CharField(help_text=HOURS)
    idle_cost_usd = serializers.CharField(help_text=USD)


class WarningSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="schedule_used, job_outside_uptime, no_rate, …")
    pool = serializers.CharField()
    node = serializers.CharField(required=False)
    seconds = serializers.CharField(required=False)
    message = serializers.CharField()


class UnitCostsSerializer(serializers.Serializer):
    period = PeriodSerializer()
    pools = PoolCostSerializer(many=True)
    models = ModelCostSerializer(many=True)
    totals = TotalsSerializer()
    stages = StageLineSerializer(
        many=True, help_text="Pipeline stage lines per model (not infrastructure)."
    )
    warnings = WarningSerializer(many=True)
    idle = IdleLineSerializer(
        many=True, required=False, help_text="Only with idle_policy=separate."
    )
