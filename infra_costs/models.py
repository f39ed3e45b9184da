"""The infrastructure layer: node pools, their versioned rates and schedules, nodes, uptime,
and one table of GPU runs — live generations and imported history alike.

It knows AI models and jobs only by slug and id (`GpuRun.model_slug`, `GpuRun.external_id`), so
it never imports the generations app.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

USD_RATE = {"max_digits": 18, "decimal_places": 6}


class NodePool(models.Model):
    """A pool of identical GPU nodes (e.g. `a100`, `l4`)."""

    slug = models.SlugField(unique=True)
    gpu_type = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    sla_queue_wait_s = models.PositiveIntegerField(
        default=60, help_text="Target queue wait; the capacity recommendation reports jobs over it."
    )
    min_nodes = models.PositiveIntegerField(default=1)
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="Default time zone of its schedule set-points."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class PoolRate(models.Model):
    """The pool's hourly price per node from `effective_from` on (versioned; never edited)."""

    pool = models.ForeignKey(NodePool, on_delete=models.CASCADE, related_name="rates")
    hourly_rate_usd = models.DecimalField(**USD_RATE, validators=[MinValueValidator(Decimal(0))])
    warm_hourly_rate_usd = models.DecimalField(
        **USD_RATE,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price of a stopped but leased node, if the provider charges one.",
    )
    effective_from = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "effective_from"], name="pool_rate_unique"),
            models.CheckConstraint(condition=Q(hourly_rate_usd__gte=0), name="pool_rate_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.pool} ${self.hourly_rate_usd}/h from {self.effective_from:%Y-%m-%d %H:%M}"


class ScheduleSetPoint(models.Model):
    """At each firing of `cron` (in `timezone`), the pool's size becomes `node_count`."""

    pool = models.ForeignKey(NodePool, on_delete=models.CASCADE, related_name="set_points")
    cron = models.CharField(max_length=100, help_text="5-field cron expression, e.g. 0 8 * * 1-5.")
    node_count = models.PositiveIntegerField()
    timezone = models.CharField(max_length=64, default="UTC")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "id"]

    def __str__(self) -> str:
        return f"{self.pool}: {self.cron} → {self.node_count} ({self.timezone})"


class Node(models.Model):
    """One GPU machine of a pool, known by its provider name."""

    pool = models.ForeignKey(NodePool, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "name"]

    def __str__(self) -> str:
        return self.name


class UptimeSource(models.TextChoices):
    IMPORTED = "imported", "Imported"
    RECORDED = "recorded", "Recorded by the system"


class UptimeInterval(models.Model):
    """A node was up (billed) during [started_at, ended_at). Overlaps of one node count once."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="uptime")
    pool = models.ForeignKey(NodePool, on_delete=models.CASCADE, related_name="uptime")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    source = models.CharField(
        max_length=16, choices=UptimeSource.choices, default=UptimeSource.IMPORTED
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["node", "started_at"]
        indexes = [models.Index(fields=["pool", "started_at", "ended_at"], name="uptime_pool_time")]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "started_at", "ended_at"], name="uptime_interval_unique"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__gt=F("started_at")), name="uptime_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.node} {self.started_at:%Y-%m-%d %H:%M}→{self.ended_at:%H:%M}"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# The final statuses of a run, in this order (reports count them in it).
TERMINAL_RUN_STATUSES: tuple[str, ...] = (
    RunStatus.SUCCEEDED.value,
    RunStatus.FAILED.value,
    RunStatus.CANCELLED.value,
)


class RunSource(models.TextChoices):
    LIVE = "live", "Live generation"
    IMPORTED = "imported", "Imported history"


class GpuRun(models.Model):
    """One job's run on a node: [started_at, finished_at) and its final status. Live
    generations are recorded here by the generations app; history is imported."""

    external_id = models.CharField(
        max_length=128, unique=True, help_text="The job id (live) or the imported id."
    )
    # Indexes here are paid by every imported row: the FKs are covered by the composite
    # indexes below (same leading column), and nothing filters on model_slug alone.
    model_slug = models.SlugField(max_length=100, db_index=False)
    pool = models.ForeignKey(
        NodePool, on_delete=models.PROTECT, related_name="runs", db_index=False
    )
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="runs", db_index=False)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    source = models.CharField(max_length=16, choices=RunSource.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["pool", "finished_at"], name="run_pool_finished"),
            models.Index(fields=["node", "started_at"], name="run_node_started"),
            # The unit-cost engine's one pass over a period's runs: per node, newest finish
            # first, without touching the table (index-only scan; see infra_costs.allocation).
            models.Index(
                fields=["node", "-finished_at"],
                include=["started_at", "status", "model_slug", "pool"],
                name="run_node_finished_cover",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="run_not_before_start",
            ),
            models.CheckConstraint(
                condition=Q(status="running", finished_at__isnull=True)
                | (~Q(status="running") & Q(finished_at__isnull=False)),
                name="run_finished_iff_terminal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.model_slug}, {self.status})"
