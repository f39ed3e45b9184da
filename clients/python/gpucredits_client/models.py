"""The API's resources as frozen dataclasses. Decimals (sent as strings) become `Decimal`,
timestamps `datetime`. Each class names the OpenAPI component it reads (`__component__`): a test
checks that every field read here exists in that component of /api/schema/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _dt(value: Any) -> datetime | None:
    return None if value in (None, "") else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class Plan:
    __component__: ClassVar[str] = "Plan"
    slug: str
    name: str
    monthly_price_usd: Decimal | None
    monthly_credits: Decimal
    overage_enabled: bool
    overage_cap: Decimal
    daily_generation_cap: int | None
    max_concurrent_jobs: int | None
    api_rate_limit_per_min: int | None
    queue_priority: str
    api_access: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            slug=d["slug"],
            name=d["name"],
            monthly_price_usd=_dec(d.get("monthly_price_usd")),
            monthly_credits=Decimal(d["monthly_credits"]),
            overage_enabled=bool(d["overage_enabled"]),
            overage_cap=Decimal(d["overage_cap"]),
            daily_generation_cap=d.get("daily_generation_cap"),
            max_concurrent_jobs=d.get("max_concurrent_jobs"),
            api_rate_limit_per_min=d.get("api_rate_limit_per_min"),
            queue_priority=d["queue_priority"],
            api_access=bool(d["api_access"]),
        )


@dataclass(frozen=True)
class Subscription:
    __component__: ClassVar[str] = "Subscription"
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Subscription:
        return cls(
            status=d["status"],
            current_period_start=_dt(d.get("current_period_start")),
            current_period_end=_dt(d.get("current_period_end")),
            cancel_at_period_end=bool(d["cancel_at_period_end"]),
        )


@dataclass(frozen=True)
class Organization:
    __component__: ClassVar[str] = "Organization"
    slug: str
    name: str
    created_at: datetime | None
    plan: Plan | None
    subscription: Subscription | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Organization:
        return cls(
            slug=d["slug"],
            name=d["name"],
            created_at=_dt(d.get("created_at")),
            plan=Plan.from_dict(d["plan"]) if d.get("plan") else None,
            subscription=(
                Subscription.from_dict(d["subscription"]) if d.get("subscription") else None
            ),
        )


@dataclass(frozen=True)
class AIModel:
    __component__: ClassVar[str] = "AIModel"
    slug: str
    name: str
    description: str
    pool: str
    credits: Decimal
    params_schema: dict[str, Any]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AIModel:
        return cls(
            slug=d["slug"],
            name=d["name"],
            description=d.get("description") or "",
            pool=d["pool"],
            credits=Decimal(d["credits"]),
            params_schema=dict(d.get("params_schema") or {}),
        )


@dataclass(frozen=True)
class JobError:
    __component__: ClassVar[str] = "JobError"
    code: str
    message: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobError:
        return cls(code=d["code"], message=d["message"])


@dataclass(frozen=True)
class Job:
    """A generation job."""

    __component__: ClassVar[str] = "Job"
    id: str
    status: JobStatus
    model: str
    params: dict[str, Any]
    credits_held: Decimal
    credits_charged: Decimal | None
    cached: bool
    node: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: JobError | None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(
            id=str(d["id"]),
            status=d["status"],
            model=d["model"],
            params=dict(d.get("params") or {}),
            credits_held=Decimal(d["credits_held"]),
            credits_charged=_dec(d.get("credits_charged")),
            cached=bool(d.get("cached")),
            node=d.get("node") or "",
            created_at=_dt(d.get("created_at")),
            started_at=_dt(d.get("started_at")),
            finished_at=_dt(d.get("finished_at")),
            result=d.get("result"),
            error=JobError.from_dict(d["error"]) if d.get("error") else None,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of `GET /generations/`; `next_cursor` is None on the last page."""

    __component__: ClassVar[str] = "PaginatedJobList"
    results: list[Job]
    next: str | None

    @property
    def next_cursor(self) -> str | None:
        if not self.next:
            return None
        from urllib.parse import parse_qs, urlsplit

        return (parse_qs(urlsplit(self.next).query).get("cursor") or [None])[0]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobPage:
        return cls(results=[Job.from_dict(j) for j in d["results"]], next=d.get("next"))


@dataclass(frozen=True)
class Grant:
    __component__: ClassVar[str] = "Grant"
    id: int
    source: str
    amount: Decimal
    remaining: Decimal
    priority: int
    expires_at: datetime | None
    created_at: datetime | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grant:
        return cls(
            id=int(d["id"]),
            source=d["source"],
            amount=Decimal(d["amount"]),
            remaining=Decimal(d["remaining"]),
            priority=int(d["priority"]),
            expires_at=_dt(d.get("expires_at")),
            created_at=_dt(d.get("created_at")),
        )


@dataclass(frozen=True)
class NextExpiry:
    __component__: ClassVar[str] = "NextExpiry"
    grant: int
    expires_at: datetime | None
    remaining: Decimal

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NextExpiry:
        return cls(
            grant=int(d["grant"]),
            expires_at=_dt(d.get("expires_at")),
            remaining=Decimal(d["remaining"]),
        )


@dataclass(frozen=True)
class Balance:
    __component__: ClassVar[str] = "Balance"
    balance: Decimal
    held: Decimal
    available: Decimal
    overage_used: Decimal
    overage_cap: Decimal
    plan: str | None
    grants: list[Grant]
    next_expiry: NextExpiry | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Balance:
        return cls(
            balance=Decimal(d["balance"]),
            held=Decimal(d["held"]),
            available=Decimal(d["available"]),
            overage_used=Decimal(d["overage_used"]),
            overage_cap=Decimal(d["overage_cap"]),
            plan=d.get("plan"),
            grants=[Grant.from_dict(g) for g in d.get("grants") or []],
            next_expiry=NextExpiry.from_dict(d["next_expiry"]) if d.get("next_expiry") else None,
        )


@dataclass(frozen=True)
class Quota:
    __component__: ClassVar[str] = "Quota"
    name: str
    unit: str
    limit: Decimal | None
    used: Decimal | None
    resets_at: datetime | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quota:
        return cls(
            name=d["name"],
            unit=d["unit"],
            limit=_dec(d.get("limit")),
            used=_dec(d.get("used")),
            resets_at=_dt(d.get("resets_at")),
        )


@dataclass(frozen=True)
class Quotas:
    __component__: ClassVar[str] = "Quotas"
    plan: str
    quotas: list[Quota]

    def get(self, name: str) -> Quota | None:
        return next((q for q in self.quotas if q.name == name), None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quotas:
        return cls(plan=d["plan"], quotas=[Quota.from_dict(q) for q in d["quotas"]])


@dataclass(frozen=True)
class UsageRow:
    __component__: ClassVar[str] = "UsageRow"
    day: str | None
    model: str | None
    credits_spent: Decimal
    generations: int
    released: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UsageRow:
        return cls(
            day=d.get("day"),
            model=d.get("model"),
            credits_spent=Decimal(d["credits_spent"]),
            generations=int(d["generations"]),
            released=int(d["released"]),
        )


@dataclass(frozen=True)
class UsageTotals:
    __component__: ClassVar[str] = "UsageTotals"
    credits_spent: Decimal
    generations: int
    released: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UsageTotals:
        return cls(
            credits_spent=Decimal(d["credits_spent"]),
            generations=int(d["generations"]),
            released=int(d["released"]),
        )


@dataclass(frozen=True)
class Usage:
    __component__: ClassVar[str] = "Usage"
    start: str
    end: str
    group_by: str
    rows: list[UsageRow]
    totals: UsageTotals

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Usage:
        return cls(
            start=d["start"],
            end=d["end"],
            group_by=d["group_by"],
            rows=[UsageRow.from_dict(r) for r in d["rows"]],
            totals=UsageTotals.from_dict(d["totals"]),
        )


@dataclass(frozen=True)
class Quote:
    """`POST /generations/quote/` (SPEC §7): the price of a submission, nothing held."""

    __component__: ClassVar[str] = "Quote"
    model: str
    credits: Decimal
    list_credits: Decimal

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quote:
        return cls(
            model=d["model"],
            credits=Decimal(d["credits"]),
            list_credits=Decimal(d["list_credits"]),
        )


# Every resource class, for the schema-agreement test.
RESOURCES: tuple[type, ...] = (
    Plan,
    Subscription,
    Organization,
    AIModel,
    JobError,
    Job,
    JobPage,
    Grant,
    NextExpiry,
    Balance,
    Quota,
    Quotas,
    UsageRow,
    UsageTotals,
    Usage,
    Quote,
)
