"""Representations of the credits ledger for the REST API, and the query parameters its
endpoints accept. No logic here beyond parsing: reads go through `credits.selectors`.

Credit amounts are decimal strings with three places (``"12.500"``), never floats.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config import dates
from config.api.serializers import BuiltOnce, QuerySerializer
from credits.budgets.api import BudgetSerializer
from credits.models import CreditGrant, EntryKind, LedgerEntry

CREDITS = {"max_digits": 18, "decimal_places": 3}


def credits_field(help_text: str, **kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(**CREDITS, read_only=True, help_text=help_text, **kwargs)


# --- Query parameters ---------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"},
        ],
        "description": f"From {dates.EARLIEST} to {dates.LATEST}.",
    }
)
class DateOrDateTimeField(serializers.Field):
    """`YYYY-MM-DD` (midnight UTC) or an ISO 8601 timestamp (naive means UTC), within
    `config.dates`' range (so that the code can add and subtract days)."""

    default_error_messages = {
        "invalid": "Use a date (YYYY-MM-DD) or an ISO 8601 timestamp.",
        "out_of_range": dates.OUT_OF_RANGE,
    }

    def to_internal_value(self, value) -> datetime:
        moment = self._parse(value)
        if not dates.in_range(moment):
            self.fail("out_of_range")
        return moment

    def _parse(self, value) -> datetime:
        if not isinstance(value, str):
            self.fail("invalid")
        value = value.strip()
        try:
            day = parse_date(value)
            moment = None if day is not None else parse_datetime(value)
        except ValueError:  # well-formed but impossible, e.g. 2026-02-30
            self.fail("invalid")
        if day is not None:
            return datetime.combine(day, time.min, tzinfo=UTC)
        if moment is None:
            self.fail("invalid")
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def to_representation(self, value):
        return value.isoformat() if isinstance(value, datetime | date) else value


# --- Balance ------------------------------------------------------------------------------------


class GrantSerializer(BuiltOnce, serializers.ModelSerializer):
    class Meta:
        model = CreditGrant
        fields = ["id", "source", "amount", "remaining", "priority", "expires_at", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "amount": {"help_text": "Credits the grant brought in."},
            "remaining": {"help_text": "Credits of it not yet spent, held or expired."},
            "priority": {"help_text": "Burn-down order: lower numbers are spent first."},
            "expires_at": {"help_text": "When its unspent rest expires; null: never."},
        }


class NextExpirySerializer(BuiltOnce, serializers.Serializer):
    grant = serializers.IntegerField(source="pk", read_only=True, help_text="The grant's id.")
    expires_at = serializers.DateTimeField(read_only=True)
    remaining = credits_field("Credits that expire then unless spent first.")


class BalanceSerializer(BuiltOnce, serializers.Serializer):
    balance = credits_field("Posted credits: grants in, captures and expiries out.")
    held = credits_field("Credits reserved by running jobs (not yet charged).")
    available = credits_field("balance − held: what new jobs may spend (negative: overage).")
    overage_used = credits_field("How far `available` is below zero (0 when positive).")
    overage_cap = credits_field("How far below zero `available` may go (0: hard stop).")
    plan = serializers.CharField(
        read_only=True, allow_null=True, help_text="The organization's plan (slug)."
    )
    grants = GrantSerializer(
        many=True, read_only=True, help_text="Live grants (credits left), in burn-down order."
    )
    next_expiry = NextExpirySerializer(
        read_only=True, allow_null=True, help_text="The next grant to expire; null if none."
    )


# --- Ledger -------------------------------------------------------------------------------------


class LedgerEntrySerializer(serializers.ModelSerializer):
    grant = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The grant it created or expired (id)."
    )
    hold = serializers.SlugRelatedField(
        slug_field="key",
        read_only=True,
        allow_null=True,
        help_text="The hold it belongs to (its key, e.g. the job id).",
    )

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "sequence",
            "kind",
            "amount",
            "balance_delta",
            "held_delta",
            "balance_after",
            "held_after",
            "grant",
            "hold",
            "reason",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "sequence": {"help_text": "Position in the account's ledger (1, 2, 3…)."},
            "amount": {"help_text": "Magnitude of the movement; the deltas carry the sign."},
            "balance_delta": {"help_text": "Change of `balance` (0 for hold and release)."},
            "held_delta": {"help_text": "Change of `held`."},
            "balance_after": {"help_text": "The account's balance after this entry."},
            "held_after": {"help_text": "The account's held amount after this entry."},
        }


class LedgerQuerySerializer(QuerySerializer):
    kind = serializers.ChoiceField(
        choices=EntryKind.choices, required=False, help_text="Only entries of this kind."
    )
    since = DateOrDateTimeField(
        required=False,
        help_text="Only entries created at or after this time: ISO 8601 or YYYY-MM-DD (UTC).",
    )
    until = DateOrDateTimeField(
        required=False,
        help_text="Only entries created before this time: ISO 8601 or YYYY-MM-DD (UTC).",
    )

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and until <= since:
            raise serializers.ValidationError({"until": ["Must be after `since`."]})
        return attrs


# --- Quotas -------------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer"},
            {"type": "string", "format": "decimal", "pattern": r"^-?\d+\.\d{3}$"},
        ],
        "nullable": True,
    }
)
class QuotaAmountField(serializers.Field):
    """Counts are integers; credit amounts are decimal strings; null: unlimited / not tracked."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        if isinstance(value, Decimal):
            return f"{value.quantize(Decimal('0.001'))}"
        return value


QUOTA_UNITS = {
    "api_access": "boolean",
    "api_rate_limit_per_min": "requests_per_minute",
    "daily_generation_cap": "generations_per_day",
    "max_concurrent_jobs": "jobs",
    "overage_cap": "credits",
    # Fair-use unlimited plans only: generations this plan period; past it jobs are throttled.
    "fair_use_cap": "generations_per_period",
}


class QuotaSerializer(serializers.Serializer):
    name = serializers.ChoiceField(
        choices=list(QUOTA_UNITS), read_only=True, help_text="The limit, in checking order."
    )
    unit = serializers.ChoiceField(choices=sorted(set(QUOTA_UNITS.values())), read_only=True)
    limit = QuotaAmountField(
        allow_null=True,
        help_text=(
            "The plan's limit; null: unlimited. `api_access`: 1 allowed, 0 not on this plan. "
            "`overage_cap`: credits as a decimal string."
        ),
    )
    used = QuotaAmountField(
        allow_null=True,
        help_text="Current use against the limit; null where not tracked here.",
    )
    resets_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When `used` goes back to zero, if it does."
    )


class QuotasSerializer(serializers.Serializer):
    plan = serializers.CharField(read_only=True, help_text="The organization's plan (slug).")
    quotas = QuotaSerializer(many=True, read_only=True)
    budgets = BudgetSerializer(
        many=True,
        read_only=True,
        help_text="The budgets the caller's submissions reserve on, with their use.",
    )


# --- Usage --------------------------------------------------------------------------------------


class UsageQuerySerializer(QuerySerializer):
    MAX_DAYS = 366
    DEFAULT_DAYS = 30

    start = DateOrDateTimeField(
        required=False,
        help_text="Start (inclusive): YYYY-MM-DD (UTC) or ISO 8601. Default: `end` − 30 days.",
    )
    end = DateOrDateTimeField(
        required=False,
        help_text=(
            "End (exclusive): YYYY-MM-DD (UTC) or ISO 8601. Default: the end of today (UTC). "
            "At most 366 days after `start`."
        ),
    )
    group_by = serializers.ChoiceField(
        choices=["day", "model"], default="day", help_text="One row per UTC day or per model."
    )

    def validate(self, attrs):
        from datetime import timedelta

        from django.utils import timezone

        start, end = attrs.get("start"), attrs.get("end")
        if end is None:
            today = timezone.now().astimezone(UTC).date()
            end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
            if start is None:
                start = end - timedelta(days=self.DEFAULT_DAYS)
        elif start is None:
            start = end - timedelta(days=self.DEFAULT_DAYS)
        blame = "end" if "end" in attrs else "start"
        if end <= start:
            raise serializers.ValidationError({blame: ["Must be after `start`."]})
        if end - start > timedelta(days=self.MAX_DAYS):
            raise serializers.ValidationError(
                {blame: [f"The range may span at most {self.MAX_DAYS} days."]}
            )
        return {**attrs, "start": start, "end": end}


class UsageRowSerializer(serializers.Serializer):
    # Not read-only so the schema doesn't mark them required: each row has exactly one.
    day = serializers.DateField(required=False, help_text="The UTC day (group_by=day).")
    model = serializers.CharField(
        required=False,
        help_text="The model's slug (group_by=model); `unknown` when not recorded.",
    )
    credits_spent = credits_field("Credits charged for generations started in this group.")
    generations = serializers.IntegerField(read_only=True, help_text="Charged generations.")
    released = serializers.IntegerField(
        read_only=True, help_text="Generations whose hold was given back (failed, cancelled)."
    )


class UsageTotalsSerializer(serializers.Serializer):
    credits_spent = credits_field("Credits charged over the whole range.")
    generations = serializers.IntegerField(read_only=True)
    released = serializers.IntegerField(read_only=True)


class UsageSerializer(serializers.Serializer):
    start = serializers.DateTimeField(read_only=True, help_text="Start of the range (inclusive).")
    end = serializers.DateTimeField(read_only=True, help_text="End of the range (exclusive).")
    group_by = serializers.ChoiceField(choices=["day", "model"], read_only=True)
    rows = UsageRowSerializer(
        many=True, read_only=True, help_text="Groups with activity, in order; others omitted."
    )
    totals = UsageTotalsSerializer(read_only=True)
