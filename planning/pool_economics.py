"""Pool economics: what a generation costs at a given utilization of a pool's nodes, when a
second node is needed, and whether owning the nodes beats renting them (docs/planning.md,
"Pool economics", has the worked example the tests reproduce).

Pure calculations first (Decimal in, Decimal out; nothing rounded — the page rounds for
display), then the reads that feed them from the measured history:

- **Service time** of a model: the duration `finished_at − started_at` of its succeeded
  `GpuRun`s that finished in the period. The calculations use the **mean** (the expected GPU
  time a generation occupies, which is what cost and throughput depend on); the median is shown
  next to it. The pool's **mix** is the run-weighted combination of its models (Σ seconds ÷ Σ runs).
- **Cost per generation at utilization u** = rate × 1 h ÷ (generations one node serves in an
  hour at u) = rate × service_s ÷ (3600 × u). The same on any number of nodes at that u.
- **Measured utilization** = 1 − the unit-cost report's idle fraction of the pool over the
  period (busy ÷ uptime; the union of a node's runs, its uptime merged; the schedule where no
  uptime was recorded — spec §3).
- **Queue wait** (for "when is a second node needed"): arrivals Poisson, `c` nodes, measured
  mean and variance of the mix's service time. The probability of waiting is Erlang C; the wait
  of those who wait is taken as exponential with the M/G/c (Allen–Cunneen) mean, so
  `P(wait > t) = C(c, a) · exp(−2 (c − a) t / (s · (1 + cs²)))`, exact for exponential service
  times. The pool's SLA is met when the p95 wait ≤ `sla_queue_wait_s`.
- **Rent vs buy**: renting costs the pool's measured uptime node-hours × the hourly rate (scaled
  to a 730-hour month); owning costs the same every month: capex ÷ depreciation months + power
  (kW × $/kWh × 730 h, nodes powered all month) + hosting. Utilization on that page is the
  node-hours needed ÷ the node-hours the owned nodes offer (nodes × 730).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from django.db import connection
from django.db.models import Count
from django.db.models.functions import TruncHour

from infra_costs.allocation.compute import unit_cost_report
from infra_costs.models import GpuRun, NodePool, PoolRate, RunStatus, UptimeInterval

ZERO = Decimal(0)
ONE = Decimal(1)
HOUR_S = Decimal(3600)
HOURS_PER_MONTH = Decimal(730)  # 8,760 h ÷ 12
UTILIZATION_LEVELS = (Decimal("0.1"), Decimal("0.3"), Decimal("0.5"), Decimal("0.8"), ONE)
SLA_PERCENTILE = Decimal("0.95")
DEFAULT_DAYS = 30
MAX_DAYS = 92
MAX_NODES = 10_000  # nodes_needed gives up above this (None: "more than")
PRECISION = 40


# --- Pure calculations --------------------------------------------------------------------------


def cost_per_generation(*, rate_usd: Decimal, service_s: Decimal, utilization: Decimal):
    """USD per generation on nodes busy `utilization` of the time they are paid for:
    rate × service_s ÷ (3600 × u). None at u = 0 (nothing served)."""
    if utilization <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return rate_usd * service_s / (HOUR_S * utilization)


def generations_per_node_hour(*, service_s: Decimal, utilization: Decimal) -> Decimal | None:
    """Generations one node serves in an hour at `utilization`: 3600 × u ÷ service_s."""
    if service_s <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return HOUR_S * utilization / service_s


def erlang_c(*, nodes: int, load: Decimal) -> Decimal:
    """Probability that an arrival waits with `nodes` servers and offered load `load` Erlangs
    (< nodes): Erlang C via the Erlang B recursion (stable for thousands of nodes)."""
    if load <= 0:
        return ZERO
    with localcontext() as ctx:
        ctx.prec = PRECISION
        b = ONE
        for k in range(1, nodes + 1):
            b = load * b / (k + load * b)
        return nodes * b / (nodes - load * (ONE - b))


def wait_quantile(
    *,
    nodes: int,
    load: Decimal,
    service_s: Decimal,
    cs2: Decimal,
    percentile: Decimal = SLA_PERCENTILE,
) -> Decimal | None:
    """Seconds that `percentile` of the arrivals wait at most in the queue (see the module
    docstring): max(0, ln(C ÷ (1 − p))) · s · (1 + cs²) ÷ (2 (c − a)). None when the load is
    at or above the nodes (the queue grows without bound)."""
    if load >= nodes:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        waiting = erlang_c(nodes=nodes, load=load)
        tail = ONE - percentile
        if waiting <= tail:
            return ZERO
        return (waiting / tail).ln() * service_s * (ONE + cs2) / (2 * (nodes - load))


def one_node_limit(
    *, service_s: Decimal, cs2: Decimal, sla_s: Decimal, percentile: Decimal = SLA_PERCENTILE
) -> Decimal:
    """The highest utilization of a single node at which the `percentile` queue wait stays
    within `sla_s` (above it a second node is needed), floored to 1e-6. The wait grows with
    the utilization, so a bisection finds it."""
    lo, hi = ZERO, ONE
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for _ in range(64):
            mid = (lo + hi) / 2
            wait = wait_quantile(
                nodes=1, load=mid, service_s=service_s, cs2=cs2, percentile=percentile
            )
            if wait is not None and wait <= sla_s:
                lo = mid
            else:
                hi = mid
        return lo.quantize(Decimal("0.000001"), rounding=ROUND_FLOOR)


def offered_load(*, demand_per_hour: Decimal, service_s: Decimal) -> Decimal:
    """Erlangs (node-hours of work per hour) of a demand in generations per hour."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return demand_per_hour * service_s / HOUR_S


def nodes_needed(
    *,
    demand_per_hour: Decimal,
    service_s: Decimal,
    cs2: Decimal,
    sla_s: Decimal,
    percentile: Decimal = SLA_PERCENTILE,
) -> int | None:
    """The fewest nodes (at least 1) whose `percentile` queue wait at this demand is within
    `sla_s`; None above MAX_NODES."""
    load = offered_load(demand_per_hour=demand_per_hour, service_s=service_s)
    if load <= 0:
        return 1
    if load >= MAX_NODES:
        return None
    first = int(load.to_integral_value(rounding=ROUND_FLOOR)) + 1
    for c in range(max(1, first), MAX_NODES + 1):
        wait = wait_quantile(
            nodes=c, load=load, service_s=service_s, cs2=cs2, percentile=percentile
        )
        if wait is not None and wait <= sla_s:
            return c
    return None


@dataclass(frozen=True)
class OwnInputs:
    """Owning a pool's nodes: costs per node, and how many nodes."""

    cards_usd: Decimal  # GPU cards of one node
    server_usd: Decimal  # the rest of one node (chassis, CPU, memory, network)
    depreciation_months: int
    power_kw: Decimal  # per node, drawn all month
    power_usd_per_kwh: Decimal
    hosting_usd_month: Decimal  # per node (rack space, colocation)
    nodes: int


@dataclass(frozen=True)
class RentVsBuy:
    inputs: OwnInputs
    rate_usd: Decimal
    capex_usd: Decimal
    depreciation_month_usd: Decimal
    power_month_usd: Decimal
    hosting_month_usd: Decimal
    own_month_usd: Decimal
    capacity_node_hours: Decimal  # owned nodes × 730 h
    rent_node_hours: Decimal  # measured uptime node-hours per month
    busy_node_hours: Decimal  # measured busy node-hours per month
    rent_month_usd: Decimal
    rent_busy_month_usd: Decimal  # renting only the busy hours (perfect autoscaling)
    utilization: Decimal  # rent_node_hours ÷ capacity
    busy_utilization: Decimal  # busy_node_hours ÷ capacity
    break_even: Decimal | None  # utilization at which owning costs what renting does

    @property
    def rent_at_full_usd(self) -> Decimal:
        return self.capacity_node_hours * self.rate_usd

    @property
    def saving_month_usd(self) -> Decimal:
        """Owning's monthly saving against renting the measured hours (negative: a loss)."""
        return self.rent_month_usd - self.own_month_usd

    @property
    def rent_saving_month_usd(self) -> Decimal:
        """Renting's monthly saving against owning (negative: a loss)."""
        return -self.saving_month_usd

    @property
    def owning_cheaper(self) -> bool:
        return self.own_month_usd < self.rent_month_usd

    @property
    def owned_nodes_short(self) -> bool:
        """The measured hours need more node-hours than the owned nodes offer."""
        return self.utilization > 1


def rent_vs_buy(
    *,
    inputs: OwnInputs,
    rate_usd: Decimal,
    uptime_node_hours_month: Decimal,
    busy_node_hours_month: Decimal,
) -> RentVsBuy:
    """Monthly cost of owning `inputs.nodes` nodes against renting the measured node-hours at
    `rate_usd`, and the break-even utilization own ÷ (nodes × 730 × rate). Exact Decimal."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        n = Decimal(inputs.nodes)
        capex = (inputs.cards_usd + inputs.server_usd) * n
        depreciation = capex / Decimal(inputs.depreciation_months)
        power = inputs.power_kw * inputs.power_usd_per_kwh * HOURS_PER_MONTH * n
        hosting = inputs.hosting_usd_month * n
        own = depreciation + power + hosting
        capacity = HOURS_PER_MONTH * n
        full = capacity * rate_usd
        return RentVsBuy(
            inputs=inputs,
            rate_usd=rate_usd,
            capex_usd=capex,
            depreciation_month_usd=depreciation,
            power_month_usd=power,
            hosting_month_usd=hosting,
            own_month_usd=own,
            capacity_node_hours=capacity,
            rent_node_hours=uptime_node_hours_month,
            busy_node_hours=busy_node_hours_month,
            rent_month_usd=uptime_node_hours_month * rate_usd,
            rent_busy_month_usd=busy_node_hours_month * rate_usd,
            utilization=uptime_node_hours_month / capacity,
            busy_utilization=busy_node_hours_month / capacity,
            break_even=own / full if full > 0 else None,
        )


def per_month(value: Decimal, *, period_hours: Decimal) -> Decimal:
    """A quantity measured over `period_hours` scaled to a 730-hour month."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return value * HOURS_PER_MONTH / period_hours


# --- Reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceTime:
    """Measured service times of one model (or of a pool's mix) on one pool."""

    model: str
    runs: int
    total_s: Decimal
    total_sq_s: Decimal  # Σ duration² (for the variance)
    median_s: Decimal | None  # lower median: an actual run's duration (None for a mix)

    @property
    def mean_s(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = PRECISION
            return self.total_s / self.runs

    @property
    def cs2(self) -> Decimal:
        """Squared coefficient of variation: variance ÷ mean² (population)."""
        with localcontext() as ctx:
            ctx.prec = PRECISION
            mean = self.mean_s
            if mean <= 0:
                return ZERO
            variance = max(self.total_sq_s / self.runs - mean * mean, ZERO)
            return variance / (mean * mean)

    @classmethod
    def mix(cls, parts: list[ServiceTime]) -> ServiceTime | None:
        if not parts:
            return None
        return cls(
            model="mix",
            runs=sum(p.runs for p in parts),
            total_s=sum((p.total_s for p in parts), ZERO),
            total_sq_s=sum((p.total_sq_s for p in parts), ZERO),
            median_s=None,
        )


_SERVICE_SQL = """
SELECT pool_id, model_slug, count(*),
       sum(extract(epoch FROM finished_at - started_at)),
       sum(extract(epoch FROM finished_at - started_at) ^ 2),
       percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
FROM {run}
WHERE status = %(succeeded)s AND finished_at >= %(start)s AND finished_at < %(end)s
  AND finished_at > started_at
GROUP BY pool_id, model_slug
ORDER BY pool_id, model_slug
"""


def service_times(*, start: datetime, end: datetime) -> dict[int, list[ServiceTime]]:
    """Pool id → its models' service times (succeeded runs that finished in [start, end)), by
    model slug. One query."""
    with connection.cursor() as cursor:
        cursor.execute(
            _SERVICE_SQL.format(run=GpuRun._meta.db_table),
            {"succeeded": RunStatus.SUCCEEDED.value, "start": start, "end": end},
        )
        rows = cursor.fetchall()
    out: dict[int, list[ServiceTime]] = {}
    for pool_id, model, runs, total, total_sq, median in rows:
        out.setdefault(pool_id, []).append(
            ServiceTime(
                model=model,
                runs=runs,
                total_s=Decimal(total),
                total_sq_s=Decimal(total_sq),
                median_s=Decimal(median),
            )
        )
    return out


def peak_hours(*, start: datetime, end: datetime) -> dict[int, tuple[int, datetime]]:
    """Pool id → (succeeded runs started in its busiest clock hour (UTC) of [start, end), that
    hour). Pools without runs are absent."""
    rows = (
        GpuRun.objects.filter(status=RunStatus.SUCCEEDED, started_at__gte=start, started_at__lt=end)
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("pool_id", "hour")
        .annotate(runs=Count("id"))
        .order_by()
    )
    best: dict[int, tuple[int, datetime]] = {}
    for row in rows:
        current = best.get(row["pool_id"])
        key = (row["runs"], -row["hour"].timestamp())
        if current is None or key > (current[0], -current[1].timestamp()):
            best[row["pool_id"]] = (row["runs"], row["hour"])
    return best


def rates_at(*, at: datetime) -> dict[int, Decimal]:
    """Pool id → the hourly (on-demand) rate in force at `at`."""
    rates: dict[int, Decimal] = {}
    for rate in PoolRate.objects.filter(effective_from__lte=at).order_by(
        "pool_id", "-effective_from"
    ):
        rates.setdefault(rate.pool_id, rate.hourly_rate_usd)
    return rates


def nodes_up(*, start: datetime, end: datetime) -> dict[int, int]:
    """Pool id → distinct nodes with uptime in [start, end)."""
    rows = (
        UptimeInterval.objects.filter(started_at__lt=end, ended_at__gt=start)
        .values("pool_id")
        .annotate(nodes=Count("node_id", distinct=True))
        .order_by()
    )
    return {r["pool_id"]: r["nodes"] for r in rows}


def period_bounds(*, days: int, today: date) -> tuple[date, date]:
    """The `days` complete UTC days before `today`."""
    return today - timedelta(days=days), today


@dataclass(frozen=True)
class UtilizationRow:
    utilization: Decimal
    measured: bool
    generations_per_node_hour: Decimal | None
    cost_per_generation_usd: Decimal | None  # the mix
    model_costs: list[tuple[str, Decimal | None]]  # (model, USD), in PoolEconomics.models order
    p95_wait_s: Decimal | None  # one node; None: unbounded
    within_sla: bool


@dataclass
class PoolEconomics:
    pool: NodePool
    rate_usd: Decimal | None
    period_hours: Decimal
    uptime_hours: Decimal
    busy_hours: Decimal
    cost_usd: Decimal
    measured_utilization: Decimal | None
    models: list[ServiceTime]
    mix: ServiceTime | None
    peak_runs: int
    peak_hour: datetime | None
    nodes_seen: int
    rows: list[UtilizationRow] = field(default_factory=list)
    limit: Decimal | None = None  # one node's utilization limit under the SLA
    limit_per_hour: Decimal | None = None  # …as generations per hour
    demand_per_hour: Decimal | None = None
    demand_is_measured: bool = True
    load: Decimal | None = None
    nodes_needed: int | None = None
    demand_one_node_utilization: Decimal | None = None

    @property
    def sla_s(self) -> Decimal:
        return Decimal(self.pool.sla_queue_wait_s)

    @property
    def ready(self) -> bool:
        """Service times and a rate are known: the table can be computed."""
        return self.mix is not None and self.rate_usd is not None

    @property
    def measured_cost_per_generation_usd(self) -> Decimal | None:
        row = next((r for r in self.rows if r.measured), None)
        return row.cost_per_generation_usd if row else None

    @property
    def second_node_needed(self) -> bool | None:
        return None if self.nodes_needed is None else self.nodes_needed >= 2

    def month(self, value: Decimal) -> Decimal:
        return per_month(value, period_hours=self.period_hours)


def utilization_rows(
    *,
    rate_usd: Decimal,
    models: list[ServiceTime],
    mix: ServiceTime,
    sla_s: Decimal,
    measured: Decimal | None,
) -> list[UtilizationRow]:
    """The planning table: one row per level of UTILIZATION_LEVELS, plus the measured
    utilization (in order; flagged)."""
    levels = [(u, False) for u in UTILIZATION_LEVELS]
    if measured is not None and measured > 0:
        levels.append((measured, True))
        levels.sort(key=lambda lv: (lv[0], lv[1]))
    rows = []
    for u, is_measured in levels:
        wait = wait_quantile(nodes=1, load=u, service_s=mix.mean_s, cs2=mix.cs2)
        rows.append(
            UtilizationRow(
                utilization=u,
                measured=is_measured,
                generations_per_node_hour=generations_per_node_hour(
                    service_s=mix.mean_s, utilization=u
                ),
                cost_per_generation_usd=cost_per_generation(
                    rate_usd=rate_usd, service_s=mix.mean_s, utilization=u
                ),
                model_costs=[
                    (
                        m.model,
                        cost_per_generation(rate_usd=rate_usd, service_s=m.mean_s, utilization=u),
                    )
                    for m in models
                ],
                p95_wait_s=wait,
                within_sla=wait is not None and wait <= sla_s,
            )
        )
    return rows


def pool_economics(
    *, start: date, end: date, demand: dict[str, Decimal] | None = None, now: datetime
) -> list[PoolEconomics]:
    """Every pool (by slug) with its measured inputs over the UTC days [start, end) and the
    planning table computed from them. `demand`: pool slug → generations per hour to plan
    for (default: the pool's measured peak hour)."""
    demand = demand or {}
    start_dt = datetime.combine(start, time(0), tzinfo=UTC)
    end_dt = datetime.combine(end, time(0), tzinfo=UTC)
    period_hours = Decimal((end_dt - start_dt).total_seconds()) / HOUR_S
    report = {p["pool"]: p for p in unit_cost_report(start, end)["pools"]}
    times = service_times(start=start_dt, end=end_dt)
    peaks = peak_hours(start=start_dt, end=end_dt)
    rates = rates_at(at=now)
    seen = nodes_up(start=start_dt, end=end_dt)
    out = []
    for pool in NodePool.objects.order_by("slug"):
        measured = report.get(pool.slug)
        idle = measured.get("idle_fraction") if measured else None
        models = times.get(pool.pk, [])
        peak_runs, peak_hour = peaks.get(pool.pk, (0, None))
        econ = PoolEconomics(
            pool=pool,
            rate_usd=rates.get(pool.pk),
            period_hours=period_hours,
            uptime_hours=Decimal(measured["uptime_hours"]) if measured else ZERO,
            busy_hours=Decimal(measured["busy_hours"]) if measured else ZERO,
            cost_usd=Decimal(measured["cost_usd"]) if measured else ZERO,
            measured_utilization=None if idle is None else ONE - Decimal(idle),
            models=models,
            mix=ServiceTime.mix(models),
            peak_runs=peak_runs,
            peak_hour=peak_hour,
            nodes_seen=seen.get(pool.pk, 0),
        )
        if econ.ready:
            mix = econ.mix
            econ.rows = utilization_rows(
                rate_usd=econ.rate_usd,
                models=models,
                mix=mix,
                sla_s=econ.sla_s,
                measured=econ.measured_utilization,
            )
            econ.limit = one_node_limit(service_s=mix.mean_s, cs2=mix.cs2, sla_s=econ.sla_s)
            econ.limit_per_hour = generations_per_node_hour(
                service_s=mix.mean_s, utilization=econ.limit
            )
            wanted = demand.get(pool.slug)
            econ.demand_is_measured = wanted is None
            econ.demand_per_hour = Decimal(peak_runs) if wanted is None else wanted
            econ.load = offered_load(demand_per_hour=econ.demand_per_hour, service_s=mix.mean_s)
            econ.demand_one_node_utilization = econ.load
            econ.nodes_needed = nodes_needed(
                demand_per_hour=econ.demand_per_hour,
                service_s=mix.mean_s,
                cs2=mix.cs2,
                sla_s=econ.sla_s,
            )
        out.append(econ)
    return out


def default_owned_nodes(econ: PoolEconomics) -> int:
    """Nodes to own by default: the distinct nodes the pool ran in the period, else enough for
    its average uptime (at least 1)."""
    if econ.nodes_seen:
        return econ.nodes_seen
    if econ.period_hours > 0 and econ.uptime_hours > 0:
        avg = (econ.uptime_hours / econ.period_hours).to_integral_value(rounding=ROUND_CEILING)
        return max(1, int(avg))
    return 1


def pool_rent_vs_buy(econ: PoolEconomics, inputs: OwnInputs) -> RentVsBuy | None:
    """Rent vs buy for one pool from its measured uptime and busy hours (per month)."""
    if econ.rate_usd is None or econ.period_hours <= 0:
        return None
    return rent_vs_buy(
        inputs=inputs,
        rate_usd=econ.rate_usd,
        uptime_node_hours_month=econ.month(econ.uptime_hours),
        busy_node_hours_month=econ.month(econ.busy_hours),
    )
