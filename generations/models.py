"""The model catalog, versioned credit prices, and generation jobs with their status log.

Writes go through `generations.services`; a job's credits move only through `credits.services`
(`spend_authorize` at acceptance, `hold_capture` / `hold_release` at the end).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from accounts.models import CREDIT_DECIMALS, USD_DECIMALS, APIKey, Organization
from credits.models import CreditHold
from generations.stages import validate_stages
from infra_costs.models import NodePool


class Backend(models.TextChoices):
    SIMULATED = "simulated", "Simulated GPU"
    COMFYUI = "comfyui", "ComfyUI (HTTP)"


def default_params_schema() -> dict:
    return {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
            "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }


class AIModel(models.Model):
    """A generative model customers can run. Its price lives in `CreditRate` versions."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True)
    pool = models.ForeignKey(
        NodePool,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Where it runs. Models created by a history import may have none.",
    )
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.SIMULATED)
    backend_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Backend settings: simulated service time / failure rate, ComfyUI workflow.",
    )
    params_schema = models.JSONField(
        default=default_params_schema,
        help_text="JSON Schema of `params`. `prompt` (string) and `seed` (integer) are always "
        "accepted.",
    )
    external_cost_usd = models.DecimalField(
        **USD_DECIMALS,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Third-party API or licensing cost per succeeded generation.",
    )
    cost_stages = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_stages],
        help_text="Extra pipeline stages per succeeded generation, besides GPU time: CPU "
        'processing ({"name": "upscale", "kind": "cpu", "seconds": "4.5", "cpu_hourly_usd": '
        '"0.05"}) and fixed costs ({"name": "storage", "kind": "fixed", "usd": "0.0004"}). '
        "Added to the cost per generation in the unit-cost report.",
    )
    cache_price_credits = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price of a result served from the cache (an identical earlier request).",
    )
    max_runtime_s = models.PositiveIntegerField(
        default=600, help_text="A run past this is stopped and failed (not the customer's fault)."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = "AI model"

    def __str__(self) -> str:
        return self.name


class CreditRate(models.Model):
    """A model's price in credits from `effective_from` on. Never edited: a change is a new
    version with who, when and why."""

    model = models.ForeignKey(AIModel, on_delete=models.CASCADE, related_name="rates")
    credits = models.DecimalField(
        **CREDIT_DECIMALS,
        validators=[MinValueValidator(Decimal(0))],
        help_text="The price of a generation; with a price table, its reference price (every "
        "param at its default), computed from the table.",
    )
    price_table = models.JSONField(
        null=True,
        blank=True,
        help_text="Optional price that follows the request (see docs/pricing.md): "
        '{"base": "2", "per": [{"param": "duration_s", "credits": "1.5"}, '
        '{"param": "width*height", "per_megapixel": "0.5"}, '
        '{"param": "batch_size", "multiplier": true}], "min": "1"}.',
    )
    effective_from = models.DateTimeField()
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        get_latest_by = "effective_from"
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="rate_version_unique"),
            models.CheckConstraint(condition=Q(credits__gt=0), name="rate_credits_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}: {self.credits} credits from {self.effective_from:%Y-%m-%d}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """One generation. Accepted with a hold at the price in force (pinned), dispatched to its
    pool's queue, charged once when it succeeds or released when it fails through no fault of
    the customer or is cancelled before it starts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="jobs")
    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="jobs")
    rate = models.ForeignKey(
        CreditRate,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The price version pinned at acceptance.",
    )
    params = models.JSONField(default=dict)
    params_hash = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    priority = models.PositiveSmallIntegerField(
        default=5, help_text="Broker priority from the plan (0 is first)."
    )
    credits_held = models.DecimalField(**CREDIT_DECIMALS, default=Decimal(0))
    credits_charged = models.DecimalField(**CREDIT_DECIMALS, null=True, blank=True)
    actual_units = models.JSONField(
        null=True,
        blank=True,
        help_text="The units the backend reported it really produced (e.g. the video's "
        "duration), when its price follows the request: the charge is their price, at most "
        "the hold.",
    )
    hold = models.OneToOneField(
        CreditHold, null=True, blank=True, on_delete=models.PROTECT, related_name="job"
    )
    api_key = models.ForeignKey(
        APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # NULL (not ""): jobs without a client key never collide in the unique constraint.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    cached = models.BooleanField(default=False)
    cached_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    node = models.CharField(max_length=128, blank=True, help_text="The GPU node it ran on.")
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running job whose lease passed lost its worker."
    )
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # Publish bookkeeping (the reaper's): when the current attempt's run message last reached
    # the broker — NULL while it never did (the broker was away: the reaper publishes it at
    # its next run) — and how many messages were published for the job in all.
    published_at = models.DateTimeField(null=True, blank=True)
    publish_count = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="job_org_recent"),
            models.Index(fields=["status", "enqueued_at"], name="job_status_enqueued"),
            models.Index(fields=["model", "status"], name="job_model_status"),
            models.Index(
                fields=["organization", "model", "params_hash", "-finished_at"],
                name="job_cache_lookup",
                condition=Q(status="succeeded", cached=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_idempotency_key_unique",
            ),
            models.CheckConstraint(
                condition=Q(credits_charged__isnull=True)
                | Q(credits_charged__lte=F("credits_held"))
                | Q(cached=True),
                name="job_charge_within_hold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.slug} job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(models.Model):
    """The job's status log: one row per transition (and notable events), with its time.
    Running intervals for cost allocation come from here (and the GPU run table)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    at = models.DateTimeField()
    node = models.CharField(max_length=128, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    message = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["job", "at"], name="jobevent_job_at")]

    def __str__(self) -> str:
        return f"{self.job_id} → {self.status} at {self.at:%H:%M:%S}"


class PricingPolicy(models.Model):
    """How suggested credit prices are derived from unit costs (spec §3): one row, edited in
    the admin. `suggested = max(min_credits, ceil_to_step(cost_per_generation_usd /
    (1 − target_margin) / credit_value_usd))` — see `generations.pricing`."""

    SINGLETON_ID = 1

    credit_value_usd = models.DecimalField(
        **USD_DECIMALS,
        default=Decimal("0.01"),
        validators=[MinValueValidator(Decimal("0.000001"))],
        help_text="What one credit is worth in USD (list price of a credit).",
    )
    target_margin = models.DecimalField(
        max_digits=7,
        decimal_places=6,
        default=Decimal("0.40"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal("0.999999"))],
        help_text="Gross margin the price should leave over the fully loaded cost, as a "
        "fraction: 0.40 = 40 % (0 ≤ margin < 1).",
    )
    min_credits = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(1),
        validators=[MinValueValidator(Decimal("0.001"))],
        help_text="No suggested price is lower than this.",
    )
    step = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(1),
        validators=[MinValueValidator(Decimal("0.001"))],
        help_text="Suggested prices are rounded up to a multiple of this (1 = whole credits).",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "pricing policy"
        verbose_name_plural = "pricing policy"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="pricing_policy_singleton"),
            models.CheckConstraint(
                condition=Q(credit_value_usd__gt=0), name="pricing_policy_credit_value_positive"
            ),
            models.CheckConstraint(
                condition=Q(target_margin__gte=0, target_margin__lt=1),
                name="pricing_policy_margin_range",
            ),
            models.CheckConstraint(
                condition=Q(min_credits__gt=0), name="pricing_policy_min_credits_positive"
            ),
            models.CheckConstraint(condition=Q(step__gt=0), name="pricing_policy_step_positive"),
        ]

    def __str__(self) -> str:
        return (
            f"1 credit = ${self.credit_value_usd.normalize():f}, margin "
            f"{(self.target_margin * 100).normalize():f} %, min {self.min_credits.normalize():f}, "
            f"step {self.step.normalize():f}"
        )

    def save(self, *args, **kwargs):
        self.pk = self.SINGLETON_ID  # there is only ever one
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> PricingPolicy:
        """The policy row (created with the defaults the first time)."""
        policy, _ = cls.objects.get_or_create(pk=cls.SINGLETON_ID)
        return policy


# Usage events (metering outside generation jobs) live in their own module of this app.
from generations.metering.models import Meter, MeterRate, UsageEvent  # noqa: E402, F401

# Per-organization price overrides (enterprise contracts) live in their own module.
from generations.overrides.models import PriceOverride  # noqa: E402, F401
