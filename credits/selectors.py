"""Reads of the credits ledger, including the invariant check behind `check_ledger`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Q, QuerySet, Sum, TextField, Value

from accounts.models import Organization
from config.rows import execute as rows_execute
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    EntryAllocation,
    EntryKind,
    HoldStatus,
    LedgerEntry,
)
from credits.money import to_credits

ACCOUNT = CreditAccount._meta.db_table
GRANT = CreditGrant._meta.db_table
HOLD = CreditHold._meta.db_table
ENTRY = LedgerEntry._meta.db_table
ALLOC = EntryAllocation._meta.db_table


@dataclass(frozen=True)
class Drift:
    account_id: int
    check: str
    expected: str
    actual: str
    grant_id: int | None = None
    entry_id: int | None = None

    def __str__(self) -> str:
        where = f"account {self.account_id}"
        if self.grant_id:
            where += f" grant {self.grant_id}"
        if self.entry_id:
            where += f" entry {self.entry_id}"
        return f"{where}: {self.check}: expected {self.expected}, found {self.actual}"


# Each check returns rows (account_id, grant_id, entry_id, expected, actual) that disagree.
# Amounts are numeric(18, 3): exact, compared as they are. Asked for some accounts, every
# subquery reads only theirs (`where_entries`, `and_accounts`): one account's check reads its
# rows by index, not the whole ledger.
_CHECKS: dict[str, str] = {
    "balance == sum of posting entries": f"""
        SELECT a.id, NULL, NULL, COALESCE(e.s, 0), a.balance
        FROM {ACCOUNT} a
        LEFT JOIN (SELECT account_id, SUM(balance_delta) AS s FROM {ENTRY}
                   {{where_entries}} GROUP BY account_id) e
               ON e.account_id = a.id
        WHERE a.balance <> COALESCE(e.s, 0) {{accounts_a}}""",
    "held == sum of open holds": f"""
        SELECT a.id, NULL, NULL, COALESCE(h.s, 0), a.held
        FROM {ACCOUNT} a
        LEFT JOIN (SELECT account_id, SUM(amount) AS s FROM {HOLD}
                   WHERE status = 'held' {{and_accounts}} GROUP BY account_id) h
               ON h.account_id = a.id
        WHERE a.held <> COALESCE(h.s, 0) {{accounts_a}}""",
    "held == sum of hold/release/capture entries": f"""
        SELECT a.id, NULL, NULL, COALESCE(e.s, 0), a.held
        FROM {ACCOUNT} a
        LEFT JOIN (SELECT account_id, SUM(held_delta) AS s FROM {ENTRY}
                   {{where_entries}} GROUP BY account_id) e
               ON e.account_id = a.id
        WHERE a.held <> COALESCE(e.s, 0) {{accounts_a}}""",
    "grant remaining == sum of its allocations": f"""
        SELECT g.account_id, g.id, NULL, COALESCE(x.s, 0), g.remaining
        FROM {GRANT} g
        LEFT JOIN (SELECT grant_id, SUM(amount) AS s FROM {ALLOC}
                   WHERE grant_id IS NOT NULL {{and_accounts}} GROUP BY grant_id) x
               ON x.grant_id = g.id
        WHERE g.remaining <> COALESCE(x.s, 0) {{accounts_g}}""",
    "available == grants remaining - unfunded": f"""
        SELECT a.id, NULL, NULL, COALESCE(x.s, 0), a.balance - a.held
        FROM {ACCOUNT} a
        LEFT JOIN (SELECT account_id, SUM(amount) AS s FROM {ALLOC}
                   {{where_entries}} GROUP BY account_id) x
               ON x.account_id = a.id
        WHERE a.balance - a.held <> COALESCE(x.s, 0) {{accounts_a}}""",
    "entry chain (balance_after/held_after follow the deltas)": f"""
        SELECT account_id, NULL, id, expected, actual FROM (
            SELECT account_id, id,
                   COALESCE(LAG(balance_after) OVER w, 0) + balance_delta AS expected,
                   balance_after AS actual,
                   COALESCE(LAG(held_after) OVER w, 0) + held_delta AS expected_h,
                   held_after AS actual_h,
                   sequence, ROW_NUMBER() OVER w AS n
            FROM {ENTRY} {{where_entries}}
            WINDOW w AS (PARTITION BY account_id ORDER BY sequence)
        ) c
        WHERE expected <> actual OR expected_h <> actual_h
           OR sequence <> n""",
    "account version == last entry sequence": f"""
        SELECT a.id, NULL, NULL, COALESCE(e.m, 0), a.version
        FROM {ACCOUNT} a
        LEFT JOIN (SELECT account_id, MAX(sequence) AS m FROM {ENTRY}
                   {{where_entries}} GROUP BY account_id) e
               ON e.account_id = a.id
        WHERE a.version <> COALESCE(e.m, 0) {{accounts_a}}""",
}


def _drift_sql(filtered: bool) -> str:
    """The checks as one statement: each check's rows tagged with its position, in order."""
    if filtered:
        filters = {
            "accounts_a": "AND a.id = ANY(%(ids)s)",
            "accounts_g": "AND g.account_id = ANY(%(ids)s)",
            "where_entries": "WHERE account_id = ANY(%(ids)s)",
            "and_accounts": "AND account_id = ANY(%(ids)s)",
        }
    else:
        filters = {"accounts_a": "", "accounts_g": "", "where_entries": "", "and_accounts": ""}
    branches = [
        f"SELECT {n} AS n, d.account_id::bigint, d.grant_id::bigint, d.entry_id::bigint, "
        f"d.expected::numeric, d.actual::numeric FROM ({sql.format(**filters)}) "
        "AS d (account_id, grant_id, entry_id, expected, actual)"
        for n, sql in enumerate(_CHECKS.values())
    ]
    return "\nUNION ALL\n".join(branches) + "\nORDER BY n"


_DRIFT_SQL = {filtered: _drift_sql(filtered) for filtered in (False, True)}


def ledger_drift(*, account_ids: list[int] | None = None) -> list[Drift]:
    """Every way the ledger disagrees with itself (spec §2 invariants), set-based: the
    invariants' checks as one statement over all accounts (or just `account_ids`), each row
    tagged with its check. Empty means clean."""
    if account_ids is not None and not account_ids:
        return []
    names = list(_CHECKS)
    params = {"ids": list(account_ids)} if account_ids is not None else {}
    with connection.cursor() as cursor:
        cursor.execute(_DRIFT_SQL[account_ids is not None], params)
        rows = cursor.fetchall()
    return [
        Drift(
            account_id=account_id,
            check=names[n],
            expected=str(to_credits(expected)),
            actual=str(to_credits(actual)),
            grant_id=grant_id,
            entry_id=entry_id,
        )
        for n, account_id, grant_id, entry_id, expected, actual in rows
    ]


@dataclass(frozen=True)
class CreditTotals:
    """System-wide: credits in open holds now, and every credit ever captured (only grows)."""

    held: Decimal
    captured: Decimal


def credit_totals() -> CreditTotals:
    """One query for operations' metrics: Σ amount of open holds and Σ of capture entries."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COALESCE(SUM(amount), 0) FROM {HOLD} WHERE status = %s),"
            f" (SELECT COALESCE(SUM(amount), 0) FROM {ENTRY} WHERE kind = %s)",
            [HoldStatus.HELD, EntryKind.CAPTURE],
        )
        held, captured = cursor.fetchone()
    return CreditTotals(held=to_credits(held), captured=to_credits(captured))


# --- Customer-facing reads (always scoped to one organization) --------------------------------


def account_get(*, organization: Organization) -> CreditAccount | None:
    return CreditAccount.objects.filter(organization=organization).first()


def grants_live(*, account: CreditAccount) -> QuerySet[CreditGrant]:
    return CreditGrant.objects.filter(account=account, remaining__gt=0)


def entries_for(*, organization: Organization, kind: str | None = None) -> QuerySet[LedgerEntry]:
    qs = LedgerEntry.objects.filter(account__organization=organization)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def overage_used(*, account: CreditAccount) -> Decimal:
    """How far `available` is below zero (0 when positive)."""
    return max(Decimal(0), -(account.balance - account.held))


def unfunded_outstanding(*, account: CreditAccount) -> Decimal:
    """Credits spent or held beyond every grant and not yet settled."""
    total = EntryAllocation.objects.filter(account_id=account.pk, grant__isnull=True).aggregate(
        s=Sum("amount")
    )["s"]
    return -(total or Decimal(0))


def overage_billable(*, account: CreditAccount) -> Decimal:
    """Captured unfunded credits not yet on an overage record: what a period close bills."""
    from credits.models import HoldStatus, OverageRecord, OverageStatus

    open_holds = CreditHold.objects.filter(account_id=account.pk, status=HoldStatus.HELD)
    held_unfunded = open_holds.aggregate(s=Sum("unfunded"))["s"] or Decimal(0)
    unsettled = (
        OverageRecord.objects.filter(account_id=account.pk)
        # Paid records were settled by an entry; the others (open, invoiced, or void: forgiven)
        # must not be billed again.
        .exclude(status=OverageStatus.PAID)
        .aggregate(s=Sum("credits"))["s"]
        or Decimal(0)
    )
    return max(Decimal(0), unfunded_outstanding(account=account) - held_unfunded - unsettled)


# --- Summaries shared by the API and the web UI -------------------------------------------------


@dataclass(frozen=True)
class BalanceSummary:
    balance: Decimal
    held: Decimal
    available: Decimal
    overage_used: Decimal
    overage_cap: Decimal
    plan: str | None
    grants: list[CreditGrant]
    next_expiry: CreditGrant | None


def balance_summary(*, organization: Organization) -> BalanceSummary:
    """Balance, held, available, overage used/cap, the live grants (burn-down order) and the
    next grant to expire."""
    from django.utils import timezone

    account = account_get(organization=organization)
    subscription = getattr(organization, "subscription", None)
    plan = subscription.plan.slug if subscription is not None else None
    if account is None:
        zero = Decimal(0)
        return BalanceSummary(zero, zero, zero, zero, zero, plan, [], None)
    grants = list(grants_live(account=account).order_by(*CreditGrant._meta.ordering))
    now = timezone.now()
    expiring = [g for g in grants if g.expires_at is not None and g.expires_at > now]
    return BalanceSummary(
        balance=account.balance,
        held=account.held,
        available=account.available,
        overage_used=overage_used(account=account),
        overage_cap=account.overage_limit,
        plan=plan,
        grants=grants,
        next_expiry=min(expiring, key=lambda g: g.expires_at) if expiring else None,
    )


@dataclass(frozen=True)
class QuotaStatus:
    name: str
    limit: int | Decimal | None  # None: unlimited / not applicable
    used: int | Decimal | None
    resets_at: object = None


def quota_day_start(now):
    """Daily caps reset at midnight UTC."""
    from datetime import UTC

    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def generations_today(*, account: CreditAccount, now) -> int:
    """What the daily generation cap counts: holds placed since midnight UTC that are still
    held or were charged (released ones — failures not the customer's, cancels — don't count;
    nor do usage events, metered outside jobs: metadata `meter`)."""
    from credits.models import HoldStatus

    return (
        CreditHold.objects.filter(
            account=account,
            created_at__gte=quota_day_start(now),
            status__in=[HoldStatus.HELD, HoldStatus.CAPTURED],
        )
        .exclude(metadata__has_key="meter")
        .count()
    )


_RUNNING_SQL = f"SELECT COUNT(*) FROM {HOLD} WHERE account_id = %s AND status = %s"


def jobs_running(*, account: CreditAccount) -> int:
    """What the concurrent-jobs cap counts: open holds (queued or running jobs). A fixed
    statement (config.rows): it runs on every submission."""
    return rows_execute(_RUNNING_SQL, [account.pk, HoldStatus.HELD])[0][0]


@dataclass(frozen=True)
class FairUseStatus:
    """A fair-use unlimited plan's monthly cap: generations this plan period (holds placed
    since the period started, still held or charged) against the cap, and whether new jobs are
    throttled (`mode`: lowest priority, or `hourly_rate` starts per hour) until `resets_at`."""

    cap: int | None
    used: int
    mode: str
    hourly_rate: int | None
    resets_at: object

    @property
    def throttled(self) -> bool:
        return self.cap is not None and self.used >= self.cap


def fair_use_status(*, organization: Organization, account: CreditAccount | None = None):
    """The organization's fair-use status, or None when its plan is not a fair-use unlimited
    plan (or it has no subscription)."""
    from credits.models import HoldStatus

    subscription = getattr(organization, "subscription", None)
    if subscription is None or not subscription.plan.unlimited:
        return None
    plan = subscription.plan
    account = account or account_get(organization=organization)
    used = 0
    if account is not None:
        used = (
            CreditHold.objects.filter(
                account=account,
                created_at__gte=subscription.current_period_start,
                status__in=[HoldStatus.HELD, HoldStatus.CAPTURED],
            )
            .exclude(metadata__has_key="meter")  # usage events are not generations
            .count()
        )
    return FairUseStatus(
        cap=plan.fair_use_cap,
        used=used,
        mode=plan.fair_use_throttle,
        hourly_rate=plan.fair_use_hourly_rate,
        resets_at=subscription.current_period_end,
    )


def fair_use_last_start(*, account: CreditAccount, since) -> str | None:
    """The latest start time given to a rate-throttled job of this period that still counts
    (held or charged): the next one starts one interval after it. ISO text in a fixed format
    (`credits.services.FAIR_USE_TIME_FORMAT`), so the text order is the time order."""
    from django.db.models import Max
    from django.db.models.fields.json import KT

    from credits.models import HoldStatus

    return (
        CreditHold.objects.filter(
            account=account,
            created_at__gte=since,
            status__in=[HoldStatus.HELD, HoldStatus.CAPTURED],
            metadata__fair_use__mode="rate",
        )
        .annotate(start=KT("metadata__fair_use__not_before"))
        .aggregate(m=Max("start"))["m"]
    )


def quota_status(*, organization: Organization, now=None) -> list[QuotaStatus]:
    """Every plan limit with its current use, in the order submissions are checked."""
    from datetime import timedelta

    from django.utils import timezone

    now = now or timezone.now()
    plan = organization.subscription.plan
    account = account_get(organization=organization)
    day_start = quota_day_start(now)
    today = generations_today(account=account, now=now) if account else 0
    running = jobs_running(account=account) if account else 0
    fair_use = fair_use_status(organization=organization, account=account)
    extra = []
    if fair_use is not None:  # only fair-use unlimited plans have this one
        extra.append(QuotaStatus("fair_use_cap", fair_use.cap, fair_use.used, fair_use.resets_at))
    return [
        QuotaStatus("api_access", 1 if plan.api_access else 0, None),
        QuotaStatus("api_rate_limit_per_min", plan.api_rate_limit_per_min, None),
        QuotaStatus(
            "daily_generation_cap", plan.daily_generation_cap, today, day_start + timedelta(days=1)
        ),
        QuotaStatus("max_concurrent_jobs", plan.max_concurrent_jobs, running),
        QuotaStatus(
            "overage_cap",
            account.overage_limit if account else Decimal(0),
            overage_used(account=account) if account else Decimal(0),
        ),
        *extra,
    ]


@dataclass(frozen=True)
class UsageRow:
    key: str  # the day (YYYY-MM-DD) or the model slug
    credits_spent: Decimal
    generations: int
    released: int


def usage(*, organization: Organization, start, end, group_by: str = "day") -> list[UsageRow]:
    """Captured credits and counts of holds created in [start, end), per UTC day or per model
    (the `model` key of the hold's metadata; `meter:<slug>` for usage events, which add to the
    credits spent but are not generations). One grouped query."""
    from django.db.models import Count
    from django.db.models.fields.json import KT
    from django.db.models.functions import Coalesce, TruncDate

    from credits.models import HoldStatus

    if group_by not in ("day", "model"):
        raise ValueError(group_by)
    holds = CreditHold.objects.filter(
        account__organization=organization, created_at__gte=start, created_at__lt=end
    )
    key = (
        TruncDate("created_at")
        if group_by == "day"
        else Coalesce(KT("metadata__model"), Value("unknown"), output_field=TextField())
    )
    rows = (
        holds.annotate(k=key)
        .values("k")
        .annotate(
            spent=Coalesce(
                Sum("captured_amount", filter=Q(status=HoldStatus.CAPTURED)), Value(Decimal(0))
            ),
            # Usage events (metered outside jobs: metadata `meter`) count in `spent` only.
            generations=Count(
                "id", filter=Q(status=HoldStatus.CAPTURED) & ~Q(metadata__has_key="meter")
            ),
            released=Count("id", filter=Q(status__in=[HoldStatus.RELEASED, HoldStatus.EXPIRED])),
        )
        .order_by("k")
    )
    return [
        UsageRow(str(r["k"]), to_credits(r["spent"]), r["generations"], r["released"]) for r in rows
    ]


# --- Web UI reads: daily usage ----------------------------------------------------------------


def usage_daily(*, organization: Organization, days: int = 30, now=None) -> list[UsageRow]:
    """`usage` per UTC day for the last `days` days (today included), one row per day, days
    without activity as zeros, oldest first."""
    from datetime import UTC, timedelta

    from django.utils import timezone

    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime_at_midnight(first)
    end = datetime_at_midnight(today + timedelta(days=1))
    found = {r.key: r for r in usage(organization=organization, start=start, end=end)}
    rows = []
    for i in range(days):
        key = (first + timedelta(days=i)).isoformat()
        rows.append(found.get(key) or UsageRow(key, Decimal(0).quantize(Decimal("0.001")), 0, 0))
    return rows


def datetime_at_midnight(day):
    """00:00 UTC of a date, as an aware datetime."""
    from datetime import UTC, datetime, time

    return datetime.combine(day, time.min, tzinfo=UTC)


# --- API reads ----------------------------------------------------------------------------------


def entries_of_hold(*, hold_id: int) -> QuerySet[LedgerEntry]:
    """A hold's entries (hold, then capture or release), oldest first, ready for display."""
    return (
        LedgerEntry.objects.filter(hold_id=hold_id)
        .select_related("grant", "hold")
        .order_by("created_at", "id")
    )


def entries_filtered(
    *, organization: Organization, kind: str | None = None, since=None, until=None
) -> QuerySet[LedgerEntry]:
    """The organization's entries, optionally of one kind and created in [since, until), with
    their hold joined (the API shows its key). Unordered: the paginator orders."""
    qs = entries_for(organization=organization, kind=kind).select_related("hold")
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs
