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
    spot_hourly_rate_usd = models.DecimalField(
        **USD_RATE,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Price of a running spot node, where the pool has spot capacity "
        "(empty: spot nodes cost the hourly rate).",
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


class ScheduleVersion(models.Model):
    """A version of a pool's schedule: its set-points, with who wrote it and why. From its
    `effective_from` on, the pool's schedule is the latest version's set-points; before its
    first version, the unversioned set-points (entered in admin or by the demo). Versions are
    never edited: applying a schedule writes a new one, so every earlier one stays readable."""

    pool = models.ForeignKey(NodePool, on_delete=models.CASCADE, related_name="schedule_versions")
    number = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=255)
    source = models.CharField(max_length=32, default="capacity_recommendation")
    params = models.JSONField(default=dict, blank=True)
    effective_from = models.DateTimeField(
        help_text="In force from then on (the apply time): earlier periods keep the schedule "
        "they had."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "number"], name="schedule_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.pool} schedule v{self.number}"


class ScheduleSetPoint(models.Model):
    """At each firing of `cron` (in `timezone`), the pool's size becomes `node_count`."""

    pool = models.ForeignKey(NodePool, on_delete=models.CASCADE, related_name="set_points")
    version = models.ForeignKey(
        ScheduleVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="set_points",
        help_text="Empty: an unversioned set-point, used while the pool has no version.",
    )
    cron = models.CharField(max_length=100, help_text="5-field cron expression, e.g. 0 8 * * 1-5.")
    node_count = models.PositiveIntegerField()
    timezone = models.CharField(max_length=64, default="UTC")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "id"]

    def __str__(self) -> str:
        return f"{self.pool}: {self.cron} → {self.node_count} ({self.timezone})"


class NodeState(models.TextChoices):
    """Spec §7. `cold`: not rented ($0); `warm`: leased but stopped (the warm rate); `hot`:
    running with its model loaded (the hourly rate); `serving`: hot and running jobs."""

    COLD = "cold", "Cold"
    WARM = "warm", "Warm"
    HOT = "hot", "Hot"
    SERVING = "serving", "Serving"


class NodeTransition(models.TextChoices):
    """A provider operation under way; a node in transition takes no work."""

    NONE = "", "—"
    RENTING = "renting", "Renting"
    RESUMING = "resuming", "Resuming"
    STOPPING = "stopping", "Stopping"
    RELEASING = "releasing", "Releasing"


class NodeHealth(models.TextChoices):
    """What the provider last said of a running node (alerts: degraded warns, down is critical)."""

    OK = "ok", "OK"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"


class CapacityType(models.TextChoices):
    ON_DEMAND = "on_demand", "On demand"
    SPOT = "spot", "Spot"


class RateKind(models.TextChoices):
    """Which of the pool's rates an uptime interval is billed at."""

    ON_DEMAND = "on_demand", "Hourly (on demand)"
    SPOT = "spot", "Spot"
    WARM = "warm", "Warm (stopped, leased)"


class Node(models.Model):
    """One GPU machine of a pool, known by its provider name.

    Nodes with a `provider` are managed by the fleet (`infra_costs.fleet`): their state moves
    cold → warm → hot → serving through provider operations, and every change of what they are
    billed at writes uptime (`billing_kind` since `billing_since` is the open interval). Nodes
    without one are known from imports or static configuration only."""

    pool = models.ForeignKey(NodePool, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=128, unique=True)
    # Database defaults too: imports insert nodes with raw SQL (infra_costs.imports).
    provider = models.CharField(
        max_length=32,
        blank=True,
        default="",
        db_default="",
        help_text="The provider managing it; empty: not managed.",
    )
    provider_ref = models.CharField(max_length=128, blank=True, default="", db_default="")
    capacity_type = models.CharField(
        max_length=16,
        choices=CapacityType.choices,
        default=CapacityType.ON_DEMAND,
        db_default=CapacityType.ON_DEMAND,
    )
    is_primary = models.BooleanField(
        default=False, db_default=False, help_text="The autoscaler never stops a primary node."
    )
    state = models.CharField(
        max_length=16, choices=NodeState.choices, default=NodeState.COLD, db_default="cold"
    )
    transition = models.CharField(
        max_length=16,
        choices=NodeTransition.choices,
        default=NodeTransition.NONE,
        db_default="",
        blank=True,
    )
    transition_ready_at = models.DateTimeField(null=True, blank=True)
    health = models.CharField(
        max_length=16, choices=NodeHealth.choices, default=NodeHealth.OK, db_default="ok"
    )
    state_since = models.DateTimeField(null=True, blank=True)
    last_busy_at = models.DateTimeField(null=True, blank=True)
    slots = models.PositiveSmallIntegerField(
        default=1, db_default=1, help_text="Jobs it runs at once (a batch counts as one)."
    )
    # Jobs running on it now: taken by one conditional UPDATE (`running_jobs < slots`), given
    # back when a job ends, re-counted from the running GPU runs by the fleet tick.
    running_jobs = models.PositiveSmallIntegerField(default=0, db_default=0, editable=False)
    billing_kind = models.CharField(
        max_length=16, choices=RateKind.choices, blank=True, default="", db_default=""
    )
    billing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pool", "name"]
        indexes = [models.Index(fields=["pool", "state"], name="node_pool_state")]
        constraints = [
            models.CheckConstraint(
                condition=Q(billing_kind="", billing_since__isnull=True)
                | (~Q(billing_kind="") & Q(billing_since__isnull=False)),
                name="node_billing_open_iff_kind",
            ),
            # The target of the runs' composite foreign key (node_id, pool_id), migration 0008:
            # a run's pool is its node's pool, checked by one key instead of two.
            models.UniqueConstraint(fields=["id", "pool"], name="node_id_pool_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def managed(self) -> bool:
        return bool(self.provider)

    @property
    def takes_work(self) -> bool:
        return self.state in (NodeState.HOT, NodeState.SERVING) and not self.transition


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
    rate_kind = models.CharField(
        max_length=16,
        choices=RateKind.choices,
        default=RateKind.ON_DEMAND,
        db_default=RateKind.ON_DEMAND,
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
    generations are recorded here by the generations app; history is imported.

    The table is partitioned by month of `started_at` (migration 0007, `infra_costs.partitions`;
    docs/performance.md "A year of history"): its database primary key is (id, started_at), `id`
    stays unique through its identity sequence and is Django's pk. A unique index of a
    partitioned table must contain the partition key, so `external_id` is unique through
    `GpuRunKey`, which the writers fill with the run: `services.gpu_run_start` in the run's
    statement, the jobs import in the run's transaction."""

    external_id = models.CharField(
        max_length=128, help_text="The job id (live) or the imported id (unique: GpuRunKey)."
    )
    # Indexes here are paid by every imported row: the FKs are covered by the composite
    # indexes below (same leading column), and nothing filters on model_slug alone.
    model_slug = models.SlugField(max_length=100, db_index=False)
    # One database foreign key for both, (node_id, pool_id) → Node (id, pool_id), deferred
    # (migration 0008): a run's pool is its node's, and a row pays one check, not two.
    pool = models.ForeignKey(
        NodePool,
        on_delete=models.PROTECT,
        related_name="runs",
        db_index=False,
        db_constraint=False,
    )
    node = models.ForeignKey(
        Node, on_delete=models.PROTECT, related_name="runs", db_index=False, db_constraint=False
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    source = models.CharField(max_length=16, choices=RunSource.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["external_id"], name="run_external_id"),
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


class GpuRunKey(models.Model):
    """The external ids of the runs: the uniqueness of `GpuRun.external_id` across the monthly
    partitions (claimed with the run's insert; the primary key arbitrates replays and
    concurrent writers). A run's delete frees its id (trigger); a detached month
    keeps its ids taken, so an archived run is not imported again."""

    # Collation "C" (migration 0008): byte order, the same equality; an import claims 1M ids
    # ~40 % faster than in the database's collation with Django's second (`_like`) index.
    external_id = models.CharField(max_length=128, primary_key=True, db_collation="C")

    def __str__(self) -> str:
        return self.external_id


# --- The fleet: autoscaling policy, decisions and the node lifecycle log ----------------------


class AutoscalePolicy(models.Model):
    """How the autoscaler runs one pool (one row per pool, editable in admin). Defaults are
    the plan of issue 11: resume a warm standby above 10 queued jobs, rent above 30 when none
    is warm, stop to warm after 30 min under 3, release after 24 h warm, scale at once when a
    priority job waits over 30 s, refuse free-tier submissions while the wait is over 60 s."""

    pool = models.OneToOneField(NodePool, on_delete=models.CASCADE, related_name="autoscale")
    enabled = models.BooleanField(default=True)
    provider = models.CharField(max_length=32, default="simulated")
    provider_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Provider settings (simulated: rent_delay_s [min, max], resume_delay_s "
        "[min, max], stop_delay_s, release_delay_s, model_load_s, rent_failure_rate, "
        "resume_failure_rate, seed).",
    )
    capacity_type = models.CharField(
        max_length=16, choices=CapacityType.choices, default=CapacityType.ON_DEMAND
    )
    max_nodes = models.PositiveIntegerField(default=8, help_text="Never more nodes leased.")
    node_slots = models.PositiveSmallIntegerField(default=1, help_text="Jobs per node at once.")
    resume_queue_depth = models.PositiveIntegerField(default=10)
    rent_queue_depth = models.PositiveIntegerField(default=30)
    calm_queue_depth = models.PositiveIntegerField(default=3)
    calm_for_s = models.PositiveIntegerField(
        default=1800, help_text="Queue under the calm depth this long → stop a node to warm."
    )
    warm_release_after_s = models.PositiveIntegerField(
        default=86400, help_text="A node warm this long is released unless a spike is predicted."
    )
    priority_wait_s = models.PositiveIntegerField(
        default=30, help_text="A pro or enterprise job waiting this long scales up at once."
    )
    free_tier_max_wait_s = models.PositiveIntegerField(
        default=60, help_text="Free-tier submissions get server_busy while the wait is longer."
    )
    calm_since = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "autoscale policies"

    def __str__(self) -> str:
        return f"autoscale {self.pool}"


class ScalingAction(models.TextChoices):
    RESUME = "resume", "Resume a warm node"
    RENT = "rent", "Rent a node"
    STOP = "stop", "Stop a node to warm"
    RELEASE = "release", "Release a warm node"
    BLOCKED = "blocked", "Wanted to scale but could not"


class ScalingDecision(models.Model):
    """One decision of the autoscaler (or of staff), with the inputs it saw and why."""

    pool = models.ForeignKey(NodePool, on_delete=models.CASCADE, related_name="decisions")
    at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=16, choices=ScalingAction.choices)
    node = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    reason = models.CharField(max_length=500)
    inputs = models.JSONField(default=dict)
    ok = models.BooleanField(default=True)
    error = models.CharField(max_length=500, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["pool", "-at"], name="decision_pool_at")]

    def __str__(self) -> str:
        return f"{self.pool} {self.action} at {self.at:%Y-%m-%d %H:%M:%S}"


class NodeEvent(models.Model):
    """The lifecycle log of a managed node: every state or transition change."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=NodeState.choices)
    transition = models.CharField(max_length=16, choices=NodeTransition.choices, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["node", "at", "id"]

    def __str__(self) -> str:
        return f"{self.node} {self.state}{'/' + self.transition if self.transition else ''}"


# --- Per-hour aggregates of the unit-cost report (infra_costs.allocation.hourly) ---------------
# Exact figures of spec §3 per UTC hour, recomputed set-based from the tables above for the
# hours a trigger marked dirty (any write to GpuRun or UptimeInterval marks the hours it
# touches: migration 0006). Seconds are integer microseconds (exact). Plain ids, no FKs: these
# rows are derived data, rebuilt from the source tables at any time.


class CostHourUptime(models.Model):
    """Uptime of a pool in one hour, per rate kind (per node the union of its intervals)."""

    pk = models.CompositePrimaryKey("hour", "pool_id", "kind")
    hour = models.DateTimeField()
    pool_id = models.BigIntegerField()
    kind = models.CharField(max_length=16)
    up_us = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h pool {self.pool_id} {self.kind}"


class CostHourNode(models.Model):
    """Per node and hour: |union of its terminal runs ∩ its uptime| (busy), |union of its runs|
    and the latest finish of the runs that overlap the hour (a report whose period ends
    before it recomputes the hour: those runs are not of the period)."""

    pk = models.CompositePrimaryKey("hour", "node_id")
    hour = models.DateTimeField()
    node_id = models.BigIntegerField()
    pool_id = models.BigIntegerField()
    busy_us = models.BigIntegerField()
    runs_us = models.BigIntegerField()
    max_finish = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h node {self.node_id}"


class CostHourModel(models.Model):
    """Per model, pool and hour: succeeded seconds inside the hour (the weight) and the runs
    that finished in the hour, per final status."""

    pk = models.CompositePrimaryKey("hour", "pool_id", "model_slug")
    hour = models.DateTimeField()
    pool_id = models.BigIntegerField()
    model_slug = models.CharField(max_length=100)
    weight_us = models.BigIntegerField()
    n_succeeded = models.IntegerField()
    n_failed = models.IntegerField()
    n_cancelled = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h pool {self.pool_id} {self.model_slug}"


class CostHourDirty(models.Model):
    """An hour whose aggregates are stale (written by triggers; cleared by the refresh)."""

    hour = models.DateTimeField(primary_key=True)

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h"


class CostRunSpan(models.Model):
    """One row: an upper bound of any terminal run's length (written by the trigger), so that
    the runs overlapping an hour are found by an index range on their finish."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    max_us = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"runs ≤ {self.max_us} µs"


class DetachedRunMonth(models.Model):
    """A month of GPU runs taken out of the runs table (`partitions.gpu_run_month_detach`).

    The hours its runs touch, [frozen_from, frozen_until), are frozen (from the first run's
    start to the last one's finish, into the next month for runs going at midnight; an empty
    range when it had no runs). The refresh drops their dirty marks and the report reads their
    stored aggregates, since recomputing them would no longer see the detached runs. Attaching
    the month again (`partitions.gpu_run_month_attach`) deletes the row."""

    month = models.DateField(primary_key=True, help_text="The first day of the month (UTC).")
    table_name = models.CharField(max_length=63)
    dropped = models.BooleanField(default=False, help_text="The table was dropped.")
    detached_at = models.DateTimeField()
    frozen_from = models.DateTimeField()
    frozen_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} detached{' (dropped)' if self.dropped else ''}"
