"""Alert rules and the alerts they open.

Five fixed rules (`RuleKey`), their thresholds editable in the admin; the beat task
`operations.tasks.evaluate_alerts` measures each rule per subject (a pool or a node) and keeps at
most one open alert per (rule, subject) — a partial unique constraint says so in the database —
escalating, de-escalating and resolving it as the measure moves (`operations.alerts`).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

THRESHOLD = {"max_digits": 18, "decimal_places": 6}


class RuleKey(models.TextChoices):
    QUEUE_DEPTH = "queue_depth", "Queue depth"
    PRIORITY_WAIT = "priority_wait", "Priority job wait"
    NODE_HEALTH = "node_health", "Node health"
    GPU_UTILIZATION = "gpu_utilization", "GPU utilization"
    COST_PER_DAY = "cost_per_day", "Cost per day"


# How each rule's measure compares with its thresholds: "above" fires when the value is over
# the threshold, "below" when under it; node health fires on the node's state (no threshold).
DIRECTION = {
    RuleKey.QUEUE_DEPTH: "above",
    RuleKey.PRIORITY_WAIT: "above",
    RuleKey.NODE_HEALTH: "state",
    RuleKey.GPU_UTILIZATION: "below",
    RuleKey.COST_PER_DAY: "above",
}
UNIT = {
    RuleKey.QUEUE_DEPTH: "queued jobs",
    RuleKey.PRIORITY_WAIT: "seconds",
    RuleKey.NODE_HEALTH: "degraded warns, down is critical",
    RuleKey.GPU_UTILIZATION: "busy fraction (0.20 = 20 %)",
    RuleKey.COST_PER_DAY: "USD so far today (UTC)",
}
WINDOWED = {RuleKey.GPU_UTILIZATION}


class AlertRule(models.Model):
    """One rule's thresholds. Which measure it takes is fixed by its `key`."""

    key = models.CharField(max_length=32, choices=RuleKey.choices, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(
        max_length=300, blank=True, help_text="What it watches and in which unit."
    )
    enabled = models.BooleanField(
        default=True, help_text="A disabled rule opens nothing and resolves its open alerts."
    )
    warning_threshold = models.DecimalField(
        **THRESHOLD,
        null=True,
        blank=True,
        help_text="In the rule's unit: queued jobs, seconds, a busy fraction (0.20 = 20 %) or "
        "USD. Empty for node health (degraded warns).",
    )
    critical_threshold = models.DecimalField(
        **THRESHOLD,
        null=True,
        blank=True,
        help_text="Same unit; above the warning one (below it for GPU utilization). Empty for "
        "node health (down is critical).",
    )
    warning_window_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds the warning measure looks back (GPU utilization only).",
    )
    critical_window_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds the critical measure looks back (GPU utilization only).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def direction(self) -> str:
        return DIRECTION[RuleKey(self.key)]

    @property
    def unit(self) -> str:
        return UNIT[RuleKey(self.key)]

    @property
    def thresholds_display(self) -> str:
        """ "warning > 10, critical > 30 (queued jobs)"; node health: its unit alone."""
        if self.direction == "state" or None in (self.warning_threshold, self.critical_threshold):
            return self.unit
        sign = "<" if self.direction == "below" else ">"

        def plain(value: Decimal) -> str:
            return f"{value.normalize():f}"

        return (
            f"warning {sign} {plain(self.warning_threshold)}, "
            f"critical {sign} {plain(self.critical_threshold)} ({self.unit})"
        )

    def clean(self) -> None:
        super().clean()
        if self.key not in RuleKey.values:
            return
        key = RuleKey(self.key)
        errors: dict[str, str] = {}
        warning, critical = self.warning_threshold, self.critical_threshold
        if self.direction != "state":
            for field, value in (("warning_threshold", warning), ("critical_threshold", critical)):
                if value is None:
                    errors[field] = "Required for this rule."
                elif value < 0:
                    errors[field] = "Must be zero or more."
                elif key == RuleKey.GPU_UTILIZATION and value > 1:
                    errors[field] = "A fraction between 0 and 1 (0.20 = 20 %)."
            if not errors:
                if self.direction == "above" and critical <= warning:
                    errors["critical_threshold"] = "Must be above the warning threshold."
                if self.direction == "below" and critical >= warning:
                    errors["critical_threshold"] = "Must be below the warning threshold."
        if key in WINDOWED:
            for field in ("warning_window_s", "critical_window_s"):
                if not getattr(self, field):
                    errors[field] = "Required for this rule (seconds, more than 0)."
        if errors:
            raise ValidationError(errors)


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """A rule firing for one subject, from when it opened until it resolved. While open it is
    the only open alert of its (rule, subject); its severity follows the measure."""

    rule = models.ForeignKey(AlertRule, on_delete=models.PROTECT, related_name="alerts")
    subject = models.CharField(max_length=160, help_text='e.g. "pool a100", "node a100-sim-2".')
    severity = models.CharField(max_length=16, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    value = models.DecimalField(**THRESHOLD, help_text="The measure last seen, in the rule's unit.")
    message = models.CharField(max_length=300)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When staff were last emailed (opening, escalation)."
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [
            models.Index(fields=["state", "-opened_at"], name="alert_state_opened"),
            models.Index(
                fields=["-resolved_at"],
                condition=Q(state="resolved"),
                name="alert_resolved_recent",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=Q(state="open"),
                name="alert_one_open_per_subject",
            ),
            models.CheckConstraint(
                condition=Q(state="open", resolved_at__isnull=True)
                | Q(state="resolved", resolved_at__isnull=False),
                name="alert_resolved_iff_resolved_at",
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message}"

    @property
    def is_open(self) -> bool:
        return self.state == AlertState.OPEN


class StaffAPIToken(models.Model):
    """A staff user's token for the staff API (exports, the unit-cost report) from scripts and
    BI tools: `gpus_<8 hex prefix>_<secret>`, stored as a SHA-256 digest like organization API
    keys (`accounts.keys`). Shown once at creation; authenticates as its user, never as an
    organization (`operations.api.authentication.StaffTokenAuthentication`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "staff API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
