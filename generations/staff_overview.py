"""What staff see first (`/staff/`, `operations.views.staff_home`): the fleet, the last 30 days'
costs, prices against costs, and what needs attention — read-only, from the existing reads.

It lives in generations because it is the app that sees all the others: pools and rates
(`infra_costs.selectors.fleet`), the unit-cost report and the prices built on it
(`generations.pricing.prices_suggest`, one report over the period: its totals are the cost
figures, its rows the prices), jobs (queued, stuck, failed) and billing's open problems
(`credits.billing.selectors`). Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from credits.billing import selectors as billing_selectors
from generations import pricing
from generations.models import Job, JobStatus
from infra_costs import selectors as infra_selectors

IDLE_WARN = Decimal("0.3")  # the cost report's red line for idle capacity
FAILED_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Alert:
    level: str  # error | warning | info
    text: str
    url_name: str = ""  # where to look (a URL name; the template reverses it)
    anchor: str = ""


@dataclass(frozen=True)
class PoolLine:
    fleet: infra_selectors.PoolFleet
    queued: int
    running: int
    idle_fraction: Decimal | None  # over the period (None: no uptime)

    @property
    def idle_high(self) -> bool:
        return self.idle_fraction is not None and self.idle_fraction >= IDLE_WARN


@dataclass(frozen=True)
class StaffOverview:
    start: object  # date
    end: object  # date (exclusive)
    pools: list[PoolLine]
    infra_cost_usd: Decimal
    idle_fraction: Decimal | None
    generations: int
    cost_per_generation_usd: Decimal | None
    prices: list[pricing.PriceSuggestion]
    policy: object
    alerts: list[Alert] = field(default_factory=list)

    @property
    def below_cost(self) -> list[pricing.PriceSuggestion]:
        return [r for r in self.prices if r.below_cost]

    @property
    def last_day(self):
        return self.end - timedelta(days=1)


def _dec(value) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def staff_overview(*, now: datetime | None = None) -> StaffOverview:
    now = now or timezone.now()
    start, end = pricing.default_period(now.astimezone(UTC).date())  # the last 30 full days
    suggestions = pricing.prices_suggest(start, end, now=now)
    report = suggestions.report
    totals = report["totals"]
    idle_by_pool = {p["pool"]: _dec(p["idle_fraction"]) for p in report["pools"]}
    jobs = dict(
        (row["model__pool__slug"], row)
        for row in Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .values("model__pool__slug")
        .annotate(
            queued=Count("id", filter=Q(status=JobStatus.QUEUED)),
            running=Count("id", filter=Q(status=JobStatus.RUNNING)),
        )
    )
    pools = [
        PoolLine(
            fleet=f,
            queued=jobs.get(f.slug, {}).get("queued", 0),
            running=jobs.get(f.slug, {}).get("running", 0),
            idle_fraction=idle_by_pool.get(f.slug),
        )
        for f in infra_selectors.fleet(now=now)
    ]
    overview = StaffOverview(
        start=suggestions.start,
        end=suggestions.end,
        pools=pools,
        infra_cost_usd=_dec(totals["infra_cost_usd"]) or Decimal(0),
        idle_fraction=_dec(totals["idle_fraction"]),
        generations=totals["generations"],
        cost_per_generation_usd=_dec(totals["weighted_avg_cost_per_generation_usd"]),
        prices=[r for r in suggestions.rows if r.is_active or r.generations],
        policy=suggestions.policy,
    )
    overview.alerts.extend(_alerts(overview, now=now))
    return overview


def _alerts(overview: StaffOverview, *, now: datetime) -> list[Alert]:
    alerts = []
    below = overview.below_cost
    if below:
        names = ", ".join(r.name for r in below[:5]) + ("…" if len(below) > 5 else "")
        alerts.append(
            Alert(
                "error",
                f"{len(below)} model{'s' if len(below) != 1 else ''} sold below cost: {names}.",
                "staff_pricing:index",
            )
        )
    for line in overview.pools:
        if line.idle_high:
            alerts.append(
                Alert(
                    "warning",
                    f"Pool {line.fleet.slug} sat idle {line.idle_fraction * 100:.0f} % of its "
                    "uptime in the last 30 days.",
                    "staff_costs:index",
                )
            )
        if line.fleet.hourly_rate_usd is None:
            alerts.append(
                Alert(
                    "warning",
                    f"Pool {line.fleet.slug} has no hourly rate: its cost counts as zero.",
                    "admin:infra_costs_nodepool_changelist",
                )
            )
    stuck_before = now - timedelta(seconds=settings.GENERATIONS_REQUEUE_AFTER_S)
    stuck = (
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(
            Q(enqueued_at__lt=stuck_before)
            | Q(enqueued_at__isnull=True, created_at__lt=stuck_before)
        )
        .count()
    )
    if stuck:
        alerts.append(
            Alert(
                "warning",
                f"{stuck} job{'s' if stuck != 1 else ''} queued for more than "
                f"{settings.GENERATIONS_REQUEUE_AFTER_S} s: are the workers up?",
                "admin:generations_job_changelist",
            )
        )
    failed = Job.objects.filter(
        status=JobStatus.FAILED, finished_at__gte=now - FAILED_WINDOW
    ).count()
    if failed:
        alerts.append(
            Alert(
                "info",
                f"{failed} job{'s' if failed != 1 else ''} failed in the last 24 hours.",
                "admin:generations_job_changelist",
            )
        )
    events = billing_selectors.events_needing_attention().count()
    if events:
        alerts.append(
            Alert(
                "error",
                f"{events} Stripe event{'s' if events != 1 else ''} failed or invalid.",
                "admin:credits_stripeevent_changelist",
            )
        )
    flagged = billing_selectors.flagged_purchases().count()
    if flagged:
        alerts.append(
            Alert(
                "warning",
                f"{flagged} refunded purchase{'s' if flagged != 1 else ''} left spent credits "
                "unfunded.",
                "admin:credits_purchase_changelist",
            )
        )
    if not settings.STRIPE_SECRET_KEY:
        alerts.append(
            Alert(
                "info",
                "Stripe is not configured (STRIPE_SECRET_KEY): customers can't pay. Change plans "
                "and grant credits in the admin meanwhile.",
                "admin:index",
            )
        )
    return alerts
