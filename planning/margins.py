"""Margins per organization, per plan and per model over a period `[start, end)` (reads only).

Per organization:
* **revenue** = what was paid for the credits captured in the period (ledger `capture`
  entries dated in it), traced to the grants their holds drew from (`EntryAllocation`, net of
  what a partial capture gave back): credits of a purchased pack are worth what the pack cost
  per credit, and the overage part (drawn from no grant) the overage price in force (the
  contract's, else the plan's); credits of the plan's own grant are paid by the subscription,
  and promo, trial, referral, adjustment and refund credits were given, not sold — those bring
  no credit revenue. Plus **subscription revenue**: no payment
  of a subscription is stored, only its plan, so the plan's monthly price is prorated over the
  period calendar month by calendar month (days of the period in a month / days of that month;
  a whole month is exactly the monthly price) for subscriptions that pay (`active`,
  `past_due`; `trialing` and `canceled` pay nothing). The plan is the current one (no plan
  history is stored), assumed in force for the whole period. A pack's price counts when its
  credits are spent (captured), never at purchase, so nothing counts twice.
* **cost** = the fully loaded GPU cost of its generations — spec §3's allocation computed per
  organization instead of per model (`infra_costs.allocation.grouped`): each GPU run of the
  period whose `external_id` is a job id (`<job id>` or `<job id>#<attempt>`) belongs to that
  job's organization; runs that are no customer's job (imported history, …) form one
  "other runs" line — plus the extra per-generation costs of its succeeded runs (the models'
  external cost and pipeline stages, as the unit-cost report adds them per model).

Reconciliation (exact, before rounding): Σ organizations' GPU cost == the fully loaded cost of
the period's customer jobs, and Σ organizations' GPU cost + other runs + unattributed == the
infrastructure cost of the period.

Per plan: the organizations' rows summed by their current plan. Per model: the price of a
generation (its credit price in force at the end of the period × the credit value) against the
unit-cost report's fully loaded cost per generation, and the volume; below cost is flagged.
"""

from __future__ import annotations

import calendar
import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, localcontext

from django.db import connection, transaction
from django.db.models import Sum

from accounts.models import Organization, SubscriptionStatus
from config.web.formats import MINUS, format_percent, format_usd
from credits.billing.models import Purchase
from credits.models import (
    CreditAccount,
    CreditGrant,
    EntryAllocation,
    EntryKind,
    GrantSource,
    LedgerEntry,
)
from credits.services import overage_price_for
from generations.models import AIModel, Job, PricingPolicy
from generations.selectors import rate_current
from infra_costs.allocation import unit_cost_report
from infra_costs.allocation.assembly import q6
from infra_costs.allocation.grouped import UNGROUPED, grouped_costs
from infra_costs.models import GpuRun, RunStatus
from infra_costs.periods import Period, make_period
from infra_costs.registry import external_costs_for, stage_costs_for

ZERO = Decimal(0)
PAYING_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
NO_PLAN = "(none)"
RUN_ORG_TABLE = "_pl_run_org"
# A run's external_id is "<job uuid>" or "<job uuid>#<attempt>" (generations.services.execution).
JOB_ID_RE = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(#[0-9]+)?$"


@dataclass
class MarginRow:
    """One organization or one plan. Exact Decimals; rounded only when shown."""

    key: str
    name: str
    plan: str = NO_PLAN
    organizations: int = 1
    generations: int = 0
    credits_captured: Decimal = ZERO
    credit_revenue: Decimal = ZERO
    subscription_revenue: Decimal = ZERO
    gpu_cost: Decimal = ZERO  # fully loaded
    other_cost: Decimal = ZERO  # external + pipeline stages per generation

    @property
    def revenue(self) -> Decimal:
        return self.credit_revenue + self.subscription_revenue

    @property
    def cost(self) -> Decimal:
        return self.gpu_cost + self.other_cost

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost

    @property
    def margin_fraction(self) -> Decimal | None:
        return self.margin / self.revenue if self.revenue > 0 else None

    @property
    def cost_per_generation(self) -> Decimal | None:
        return self.cost / self.generations if self.generations else None

    def add(self, other: MarginRow) -> None:
        self.organizations += other.organizations
        self.generations += other.generations
        self.credits_captured += other.credits_captured
        self.credit_revenue += other.credit_revenue
        self.subscription_revenue += other.subscription_revenue
        self.gpu_cost += other.gpu_cost
        self.other_cost += other.other_cost


@dataclass
class ModelMargin:
    model: str
    name: str
    generations: int
    price_credits: Decimal | None
    price_usd: Decimal | None
    cost_per_generation: Decimal | None  # fully loaded (+ external), the unit-cost report's
    fully_loaded_cost: Decimal

    @property
    def margin_per_generation(self) -> Decimal | None:
        if self.price_usd is None or self.cost_per_generation is None:
            return None
        return self.price_usd - self.cost_per_generation

    @property
    def margin_fraction(self) -> Decimal | None:
        m = self.margin_per_generation
        return m / self.price_usd if m is not None and self.price_usd else None

    @property
    def below_cost(self) -> bool:
        m = self.margin_per_generation
        return m is not None and m < 0


@dataclass
class MarginReport:
    period: Period
    credit_value_usd: Decimal
    organizations: list[MarginRow] = field(default_factory=list)
    plans: list[MarginRow] = field(default_factory=list)
    models: list[ModelMargin] = field(default_factory=list)
    infra_cost: Decimal = ZERO
    customer_gpu_cost: Decimal = ZERO  # Σ organizations' GPU cost
    other_runs_cost: Decimal = ZERO  # fully loaded cost of runs that are no customer's job
    unattributed: Decimal = ZERO

    @property
    def last_day(self) -> date:
        return self.period.end - timedelta(days=1)

    @property
    def below_cost_models(self) -> list[ModelMargin]:
        return [m for m in self.models if m.below_cost]

    def total(self) -> MarginRow:
        out = MarginRow(key="total", name="Total", organizations=0)
        for row in self.organizations:
            out.add(row)
        return out


# --- Inputs ---------------------------------------------------------------------------------


def months_in(start: date, end: date) -> Decimal:
    """How many calendar months [start, end) spans, each month counted by its own length:
    2026-01-01 → 2026-02-01 is exactly 1; 2026-02-15 → 2026-03-01 is 14/28."""
    total, day = ZERO, start
    while day < end:
        days_in_month = calendar.monthrange(day.year, day.month)[1]
        month_end = day.replace(day=1) + timedelta(days=days_in_month)
        segment_end = min(end, month_end)
        total += Decimal((segment_end - day).days) / Decimal(days_in_month)
        day = segment_end
    return total


def _fill_run_orgs(period: Period) -> None:
    """The temp table (external_id, organization id) of the period's runs that are jobs."""
    run_t, job_t = GpuRun._meta.db_table, Job._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{RUN_ORG_TABLE}")
        cur.execute(
            f"""
            CREATE TEMP TABLE {RUN_ORG_TABLE} ON COMMIT DROP AS
            SELECT r.external_id, j.organization_id::text AS grp
            FROM {run_t} r
            JOIN {job_t} j ON j.id = substring(r.external_id FROM %(re)s)::uuid
            WHERE r.finished_at >= %(p0)s AND r.finished_at < %(p1)s
            """,
            {"re": JOB_ID_RE, "p0": period.start_at, "p1": period.end_at},
        )
        cur.execute(f"ANALYZE pg_temp.{RUN_ORG_TABLE}")


def _succeeded_by_org_model() -> dict[tuple[str, str], int]:
    run_t = GpuRun._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT t.grp, r.model_slug, count(*)
            FROM pg_temp.{RUN_ORG_TABLE} t JOIN {run_t} r ON r.external_id = t.external_id
            WHERE r.status = %s
            GROUP BY t.grp, r.model_slug
            """,
            [RunStatus.SUCCEEDED.value],
        )
        return {(grp, slug): int(n) for grp, slug, n in cur.fetchall()}


def _per_generation_extra(slugs: set[str]) -> dict[str, Decimal]:
    """USD per succeeded generation besides GPU time: external cost + pipeline stages."""
    external = external_costs_for(slugs)
    stages = stage_costs_for(slugs)
    return {
        s: external.get(s, ZERO) + sum((st.usd_per_generation for st in stages.get(s, [])), ZERO)
        for s in slugs
    }


def _captured_credits(period: Period) -> dict[int, Decimal]:
    rows = (
        LedgerEntry.objects.filter(
            kind=EntryKind.CAPTURE,
            created_at__gte=period.start_at,
            created_at__lt=period.end_at,
        )
        .values("account__organization_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {r["account__organization_id"]: r["total"] for r in rows}


# Per organization and grant: the credits the period's captures took from it (their holds'
# draws net of what a partial capture gave back), with the pack price of a purchased grant.
# The grant is NULL for the overage (unfunded) part.
_CAPTURED_BY_GRANT_SQL = f"""
WITH cap AS (
    SELECT hold_id FROM {LedgerEntry._meta.db_table}
    WHERE kind = 'capture' AND created_at >= %s AND created_at < %s
),
drawn AS (
    SELECT en.account_id, al.grant_id, -SUM(al.amount) AS credits
    FROM cap
    JOIN {LedgerEntry._meta.db_table} en ON en.hold_id = cap.hold_id
         AND en.kind IN ('hold', 'release')
    JOIN {EntryAllocation._meta.db_table} al ON al.entry_id = en.id
    GROUP BY en.account_id, al.grant_id
)
SELECT acc.organization_id, g.source, p.amount_usd, p.credits, d.credits
FROM drawn d
JOIN {CreditAccount._meta.db_table} acc ON acc.id = d.account_id
LEFT JOIN {CreditGrant._meta.db_table} g ON g.id = d.grant_id
LEFT JOIN {Purchase._meta.db_table} p ON p.grant_id = d.grant_id
WHERE d.credits <> 0
"""


def _paid_credit_revenue(period: Period, plans: dict[int, object]) -> dict[int, Decimal]:
    """USD paid for the credits captured in the period, per organization (module docstring):
    purchased credits at their pack's price per credit, overage at the overage price in force
    at the period's end; plan, promo, trial, referral, adjustment and refund credits at 0."""
    revenue: dict[int, Decimal] = defaultdict(Decimal)
    with connection.cursor() as cursor:
        cursor.execute(_CAPTURED_BY_GRANT_SQL, [period.start_at, period.end_at])
        rows = cursor.fetchall()
    for org_id, source, pack_usd, pack_credits, credits in rows:
        if source is None:  # the overage part
            plan = plans.get(org_id)
            if plan is not None:
                price = overage_price_for(plan, organization_id=org_id, at=period.end_at)
                revenue[org_id] += credits * price
        elif source == GrantSource.PURCHASE and pack_credits:
            revenue[org_id] += credits * pack_usd / pack_credits
    return revenue


# --- The report -----------------------------------------------------------------------------


def margins_report(start: date, end: date, *, timezone: str = "UTC") -> MarginReport:
    """Margins of `[start, end)` (local dates of `timezone`, day windows). Raises
    config.errors.ValidationError on a bad period."""
    period = make_period(start, end, window="day", timezone=timezone)
    policy = PricingPolicy.load()
    credit_value = policy.credit_value_usd
    with localcontext() as ctx:
        ctx.prec = 50
        with transaction.atomic():
            _fill_run_orgs(period)
            costs = grouped_costs(period, group_table=RUN_ORG_TABLE)
            succeeded = _succeeded_by_org_model()
        captured = _captured_credits(period)
        extra = _per_generation_extra({slug for _, slug in succeeded})
        other_cost: dict[str, Decimal] = defaultdict(Decimal)
        for (grp, slug), n in succeeded.items():
            other_cost[grp] += extra[slug] * n
        months = months_in(period.start, period.end)

        org_ids = {int(k) for k in costs.groups if k != UNGROUPED} | set(captured)
        paying = Organization.objects.filter(
            subscription__status__in=PAYING_STATUSES,
            subscription__plan__monthly_price_usd__gt=0,
        ).values_list("id", flat=True)
        org_ids |= set(paying)
        orgs = Organization.objects.filter(id__in=org_ids).select_related("subscription__plan")

        orgs = list(orgs)
        plans = {org.id: org.subscription.plan for org in orgs if hasattr(org, "subscription")}
        paid = _paid_credit_revenue(period, plans)
        report = MarginReport(period=period, credit_value_usd=credit_value)
        for org in orgs:
            sub = getattr(org, "subscription", None)
            plan = sub.plan if sub is not None else None
            group = costs.groups.get(str(org.id))
            credits = captured.get(org.id, ZERO)
            row = MarginRow(
                key=org.slug,
                name=org.name,
                plan=plan.slug if plan is not None else NO_PLAN,
                generations=group.generations if group else 0,
                credits_captured=credits,
                credit_revenue=paid.get(org.id, ZERO),
                subscription_revenue=(
                    plan.monthly_price_usd * months
                    if plan is not None and sub.status in PAYING_STATUSES
                    else ZERO
                ),
                gpu_cost=group.fully_loaded if group else ZERO,
                other_cost=other_cost.get(str(org.id), ZERO),
            )
            report.organizations.append(row)
        report.organizations.sort(key=_least_profitable_first)

        plans: dict[str, MarginRow] = {}
        for row in report.organizations:
            plan_row = plans.setdefault(
                row.plan, MarginRow(key=row.plan, name=row.plan, plan=row.plan, organizations=0)
            )
            plan_row.add(row)
        report.plans = sorted(plans.values(), key=_least_profitable_first)

        report.infra_cost = costs.infra_cost
        report.unattributed = costs.unattributed
        report.customer_gpu_cost = costs.fully_loaded(k for k in costs.groups if k != UNGROUPED)
        report.other_runs_cost = costs.fully_loaded([UNGROUPED])
        report.models = _model_margins(period, credit_value)
    return report


def _least_profitable_first(row: MarginRow):
    fraction = row.margin_fraction
    return (row.margin, fraction if fraction is not None else Decimal("-Infinity"), row.key)


def _model_margins(period: Period, credit_value: Decimal) -> list[ModelMargin]:
    """The unit-cost report's per-model figures against each model's price at the end of the
    period: below cost first, then by margin."""
    unit = unit_cost_report(period.start, period.end, window="day", timezone=period.timezone)
    by_slug = {
        m.slug: m for m in AIModel.objects.filter(slug__in=[r["model"] for r in unit["models"]])
    }
    price_at = period.end_at - timedelta(microseconds=1)
    out = []
    for r in unit["models"]:
        model = by_slug.get(r["model"])
        rate = rate_current(model=model, now=price_at) if model is not None else None
        credits = rate.credits if rate is not None else None
        cpg = r["cost_per_generation_usd"]
        out.append(
            ModelMargin(
                model=r["model"],
                name=model.name if model is not None else r["model"],
                generations=r["generations"],
                price_credits=credits,
                price_usd=credits * credit_value if credits is not None else None,
                cost_per_generation=Decimal(cpg) if cpg is not None else None,
                fully_loaded_cost=Decimal(r["fully_loaded_cost_usd"]),
            )
        )

    def order(m: ModelMargin):
        f = m.margin_fraction
        return (not m.below_cost, f if f is not None else Decimal("Infinity"), m.model)

    return sorted(out, key=order)


# --- Display and CSV --------------------------------------------------------------------------


def signed_percent(fraction: Decimal | None) -> str:
    """A margin with its sign always shown: "+12.5%", "−3.0%", "±0.0%"; "—" when undefined."""
    if fraction is None:
        return "—"
    text = format_percent(abs(fraction), places=1)
    if text == "0.0%":
        return "±" + text
    return ("+" if fraction > 0 else MINUS) + text


def signed_usd(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "—"
    text = format_usd(abs(value), places=places)
    if text == format_usd(ZERO, places=places):
        return "±" + text
    return ("+" if value > 0 else MINUS) + text


def _s(value: Decimal | None) -> str:
    return "" if value is None else f"{q6(value):f}"


ROW_COLUMNS = [
    "organizations",
    "generations",
    "credits_captured",
    "credit_revenue_usd",
    "subscription_revenue_usd",
    "revenue_usd",
    "gpu_cost_usd",
    "other_cost_usd",
    "cost_usd",
    "margin_usd",
    "margin_fraction",
]


def rows_as_csv(rows: list[MarginRow], *, kind: str) -> str:
    """`kind` "organizations" (first columns organization, name, plan) or "plans" (plan)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["organization", "name", "plan"] if kind == "organizations" else ["plan"]
    w.writerow(head + ROW_COLUMNS)
    for r in rows:
        first = [r.key, r.name, r.plan] if kind == "organizations" else [r.key]
        w.writerow(
            [
                *first,
                r.organizations,
                r.generations,
                f"{r.credits_captured:f}",
                _s(r.credit_revenue),
                _s(r.subscription_revenue),
                _s(r.revenue),
                _s(r.gpu_cost),
                _s(r.other_cost),
                _s(r.cost),
                _s(r.margin),
                _s(r.margin_fraction),
            ]
        )
    return buf.getvalue()


def models_as_csv(models: list[ModelMargin]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "model",
            "generations",
            "price_credits",
            "price_usd",
            "cost_per_generation_usd",
            "margin_per_generation_usd",
            "margin_fraction",
            "fully_loaded_cost_usd",
            "below_cost",
        ]
    )
    for m in models:
        w.writerow(
            [
                m.model,
                m.generations,
                "" if m.price_credits is None else f"{m.price_credits:f}",
                _s(m.price_usd),
                _s(m.cost_per_generation),
                _s(m.margin_per_generation),
                _s(m.margin_fraction),
                _s(m.fully_loaded_cost),
                "yes" if m.below_cost else "no",
            ]
        )
    return buf.getvalue()
