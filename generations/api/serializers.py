"""Representations of the model catalog and generation jobs for the REST API, and the bodies
and query parameters its endpoints accept. No logic here beyond parsing: submission goes
through `generations.services`, reads through `generations.selectors`.

Credit amounts are decimal strings with three places (``"5.000"``), never floats.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import QuerySerializer, StrictSerializer
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
        "when it is accepted.",
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


class JobSerializer(serializers.ModelSerializer):
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


class GenerationCancelSerializer(StrictSerializer):
    """The body of a cancel: nothing (an empty body or `{}`); any field is refused."""


class JobListQuerySerializer(QuerySerializer):
    status = serializers.ChoiceField(
        choices=JobStatus.choices, required=False, help_text="Only jobs in this status."
    )
    model = serializers.SlugField(required=False, help_text="Only jobs of this model (slug).")
