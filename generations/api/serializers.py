"""Representations of the model catalog and generation jobs for the REST API, and the bodies
and query parameters its endpoints accept. No logic here beyond parsing: submission goes
through `generations.services`, reads through `generations.selectors`.

Credit amounts are decimal strings with three places (``"5.000"``), never floats.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import BuiltOnce, QuerySerializer, StrictSerializer
from generations.models import Job, JobStatus

CREDITS = {"max_digits": 18, "decimal_places": 3}


@extend_schema_field(OpenApiTypes.OBJECT)
class ObjectField(serializers.JSONField):
    """A JSON object, documented as such (a bare JSONField would be "any"). On input any JSON
    is parsed, so a non-object is refused by the serializer with a message naming the field."""


# --- Models -------------------------------------------------------------------------------------


class AIModelSerializer(serializers.Serializer):
    slug = serializers.SlugField(read_only=True, help_text="Pass it as `model` when submitting.")
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    pool = serializers.CharField(read_only=True, help_text="The GPU node pool it runs on (slug).")
    credits = serializers.DecimalField(
        **CREDITS,
        read_only=True,
        help_text="Current price of one generation in credits; a job pays the price in force "
        "when it is accepted. For a model whose price follows the params (per second, per "
        "megapixel…), the price with every param at its default: "
        "`POST /api/v1/generations/quote/` prices a request.",
    )
    params_schema = ObjectField(
        read_only=True,
        help_text="JSON Schema `params` is validated against. Every model accepts `prompt` "
        "(string) and `seed` (integer).",
    )


# --- Jobs ---------------------------------------------------------------------------------------


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable reason, e.g. `gpu_failure`.")
    message = serializers.CharField(help_text="What went wrong.")


@extend_schema_field(JobErrorSerializer(allow_null=True))
class JobErrorField(serializers.Field):
    """A failed job's `{"code", "message"}`; null otherwise."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("source", "*")
        super().__init__(**kwargs)

    def to_representation(self, job: Job):
        if not (job.error_code or job.error):
            return None
        return {"code": job.error_code or "failed", "message": job.error or ""}


class JobSerializer(BuiltOnce, serializers.ModelSerializer):
    model = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="The model's slug."
    )
    error = JobErrorField(
        allow_null=True, help_text="`{code, message}` when the job failed; null otherwise."
    )
    result = serializers.JSONField(
        read_only=True, allow_null=True, help_text="The generation's output once it succeeded."
    )
    params = ObjectField(
        read_only=True,
        help_text="The parameters as accepted; a request without `seed` shows the seed drawn "
        "for it at random (send it again to repeat the result).",
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "model",
            "params",
            "credits_held",
            "credits_charged",
            "actual_units",
            "cached",
            "node",
            "created_at",
            "started_at",
            "finished_at",
            "result",
            "error",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "id": {"help_text": "The job's id (UUID)."},
            "status": {"help_text": "queued → running → succeeded | failed; or cancelled."},
            "credits_held": {
                "help_text": "Credits reserved at acceptance: the price in force then (pinned)."
            },
            "credits_charged": {
                "help_text": "Credits charged once the job ended (0 when released); null "
                "while it runs."
            },
            "actual_units": {
                "help_text": "The units the GPU reported it really produced (e.g. a video's "
                "`duration_s`) when the model's price follows the request: the charge is their "
                "price, at most `credits_held` (the rest is released). Null otherwise."
            },
            "cached": {"help_text": "Served from the result cache of an identical request."},
            "node": {"help_text": "The GPU node it ran on; empty until it starts."},
            "created_at": {"help_text": "When it was accepted."},
            "started_at": {"help_text": "When it started running (latest attempt)."},
            "finished_at": {"help_text": "When it reached a terminal status."},
        }


class GenerationCreateSerializer(StrictSerializer):
    """The body of a submission. Only its shape is checked here; the model and `params` are
    validated by the service (unknown model, the model's JSON Schema)."""

    model = serializers.CharField(
        max_length=100, help_text="Slug of an active model (GET /api/v1/models/)."
    )
    params = ObjectField(
        help_text="Generation parameters, validated against the model's `params_schema`; "
        'at least `{"prompt": "..."}`. Without `seed`, one is drawn at random and recorded.',
    )

    def validate_params(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class QuoteLineSerializer(serializers.Serializer):
    param = serializers.CharField(
        allow_null=True,
        help_text="The param (or product `width*height`) priced; null for the "
        "base or a flat price.",
    )
    kind = serializers.ChoiceField(
        choices=["flat", "base", "credits", "per_megapixel", "multiplier"],
        help_text="`flat`: one price per generation; `base`: the table's base; `credits`: "
        "per unit of the param; `per_megapixel`: per million of the product; `multiplier`: "
        "multiplies the whole price (images in a batch).",
    )
    quantity = serializers.CharField(
        required=False, help_text="The param's value (megapixels for `per_megapixel`)."
    )
    rate = serializers.CharField(
        required=False, help_text="Credits per unit, per megapixel, or the multiplier."
    )
    credits = serializers.CharField(
        required=False, help_text="What the line adds, exact (may have more than 3 places)."
    )


class QuoteSerializer(serializers.Serializer):
    model = serializers.CharField(source="model.slug", help_text="The model's slug.")
    credits = serializers.DecimalField(
        **CREDITS,
        help_text="The price of this request: what a submission with the same body holds now "
        "(rounded once, to 3 places, half up).",
    )
    breakdown = QuoteLineSerializer(many=True, help_text="How the price is made, line by line.")
    follows_request = serializers.BooleanField(
        help_text="The model's price depends on its params (a price table); false: flat."
    )
    unit = serializers.CharField(
        allow_null=True, help_text="The model's cost unit (e.g. `second`), for table prices."
    )
    units = serializers.CharField(
        allow_null=True, help_text="How many of `unit` the request asks for (a decimal string)."
    )
    list_credits = serializers.DecimalField(
        **CREDITS,
        help_text="The list price of this request, before the organization's contract price "
        "override (equal to `credits` without one).",
    )
    override = serializers.CharField(
        allow_null=True,
        help_text="The contract price override applied (e.g. `10% off`, `2 credits`), or null.",
    )
    rate_version = serializers.IntegerField(
        source="rate.pk", help_text="The price version a submission would pin now."
    )
    effective_from = serializers.DateTimeField(
        source="rate.effective_from", help_text="Since when that version is in force."
    )


class GenerationCancelSerializer(StrictSerializer):
    """The body of a cancel: nothing (an empty body or `{}`); any field is refused."""


class JobListQuerySerializer(QuerySerializer):
    status = serializers.ChoiceField(
        choices=JobStatus.choices, required=False, help_text="Only jobs in this status."
    )
    model = serializers.SlugField(required=False, help_text="Only jobs of this model (slug).")
