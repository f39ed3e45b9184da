"""Margins per organization, per plan and per model (planning.margins) and the staff page
/staff/planning/margins/ with its CSV downloads.

The reconcile invariant is checked against the reference implementation of spec §3
(tests/infra_costs/reference.py, exact fractions, a loop over jobs): fed the same runs with each
run's "model" replaced by its organization (or "-" for runs that are no customer's job), its
per-"model" fully loaded cost is, by definition, each organization's fully loaded cost.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal as D
from fractions import Fraction

import pytest
from django.db import connection, transaction

from accounts.models import Plan, User
from credits.billing.models import Purchase
from credits.models import CreditGrant
from credits.services import hold_capture, organization_grant, spend_authorize
from generations.models import AIModel, CreditRate, Job
from infra_costs.allocation import unit_cost_report
from infra_costs.allocation.grouped import grouped_costs
from infra_costs.models import GpuRun
from infra_costs.periods import make_period
from planning import margins as m
from tests.factories import UserFactory, account_of, make_org
from tests.infra_costs import reference
from tests.infra_costs.conftest import World, at

pytestmark = pytest.mark.django_db

URL = "/staff/planning/margins/"
START, END = date(2026, 1, 5), date(2026, 1, 8)
PERIOD = {"start": "2026-01-05", "end": "2026-01-08"}
TOL = D("0.000001")


def close(a, b) -> bool:
    return abs(Fraction(a) - Fraction(b)) <= Fraction(TOL)


class Margins(World):
    """World + customer jobs: a generations Job and its GpuRun(s) (`<job id>[#<attempt>]`)."""

    def __init__(self) -> None:
        super().__init__()
        self.group: dict[str, str] = {}  # run external_id → org id or "-"
        self.models: dict[str, AIModel] = {}

    def model(self, slug: str, pool: str, credits: str) -> AIModel:
        model = AIModel.objects.create(slug=slug, name=slug.upper(), pool=self.pools[pool])
        CreditRate.objects.create(
            model=model, credits=D(credits), effective_from=at("2025-12-01 00:00"), reason="t"
        )
        self.models[slug] = model
        return model

    def customer(self, org, slug, node, start, end, *, status="succeeded", attempt=1) -> None:
        model = self.models[slug]
        job = Job.objects.create(
            organization=org,
            model=model,
            params={},
            params_hash="x",
            status=status,
            attempts=attempt,
            created_at=at(start),
            started_at=at(start),
            finished_at=at(end),
        )
        ext = str(job.pk) if attempt == 1 else f"{job.pk}#{attempt}"
        self._run(ext, slug, node, start, end, status)
        self.group[ext] = str(org.pk)

    def other(self, slug, node, start, end, status="succeeded") -> None:
        self._n += 1
        ext = f"hist-{self._n}"
        self._run(ext, slug, node, start, end, status)
        self.group[ext] = "-"

    def _run(self, ext, slug, node, start, end, status) -> None:
        n = self.nodes[node]
        GpuRun.objects.create(
            external_id=ext,
            model_slug=slug,
            pool=n.pool,
            node=n,
            started_at=at(start),
            finished_at=at(end),
            status=status,
            source="live",
        )
        self.jobs.append(reference.Job(ext, slug, node, n.pool.slug, at(start), at(end), status))

    def oracle_by_group(self) -> dict:
        jobs = [replace(j, model=self.group[j.id]) for j in self.jobs]
        return reference.report(
            rates=self.rates, uptime=self.uptime, jobs=jobs, start=START, end=END
        )


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def data():
    """Two pools with jobs (a100 with a rate change and a day with uptime but no job:
    unallocated cost), an idle pool (unattributed), five organizations on four plans, retried
    runs (`#2`), failed runs, runs crossing midnight and the period's start, and imported runs
    that are no customer's job."""
    w = Margins()
    w.pool("a100", ("3.60", "2025-12-01 00:00"), ("4.00", "2026-01-06 12:00"))
    w.pool("l4", ("0.80", "2025-12-01 00:00"))
    w.pool("spare", ("1.00", "2025-12-01 00:00"))
    w.up("a1", "2026-01-04 20:00", "2026-01-07 00:00", pool="a100")
    w.up("a2", "2026-01-05 06:00", "2026-01-06 18:00", pool="a100")
    w.up("a2", "2026-01-07 08:00", "2026-01-07 12:00")  # a100's 01-07: cost, no job
    w.up("l1", "2026-01-05 00:00", "2026-01-08 00:00", pool="l4")
    w.up("s1", "2026-01-05 00:00", "2026-01-06 00:00", pool="spare")
    w.model("flux", "a100", "8")
    w.model("video", "a100", "1")  # priced far below its cost
    w.model("sdxl", "l4", "400")
    orgs = {
        "acme": make_org(slug="acme", plan="starter"),
        "bolt": make_org(slug="bolt", plan="creator"),
        "cyan": make_org(slug="cyan", plan="studio"),
        "dune": make_org(slug="dune", plan="free"),
        "echo": make_org(slug="echo", plan="starter"),
    }
    rng = random.Random(12)
    slots = {  # node → days it may run jobs on
        "a1": [date(2026, 1, 5), date(2026, 1, 6)],
        "a2": [date(2026, 1, 5), date(2026, 1, 6)],
        "l1": [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)],
    }
    customers = ["acme", "bolt", "cyan", "dune", "echo", None]
    for _ in range(70):
        node = rng.choice(list(slots))
        day = rng.choice(slots[node])
        t0 = datetime(day.year, day.month, day.day, tzinfo=at("2026-01-01 00:00").tzinfo)
        start = t0 + timedelta(hours=rng.randint(7, 16), seconds=rng.randint(0, 3599))
        end = start + timedelta(seconds=rng.randint(20, 2400))
        slug = rng.choice(["flux", "video"] if node != "l1" else ["sdxl"])
        status = "failed" if rng.random() < 0.1 else "succeeded"
        who = rng.choice(customers)
        if who is None:
            w.other(slug, node, _iso(start), _iso(end), status)
        else:
            w.customer(
                orgs[who],
                slug,
                node,
                _iso(start),
                _iso(end),
                status=status,
                attempt=rng.choice([1, 1, 2]),
            )
    # Crossing midnight, and starting before the period: only the seconds inside weigh.
    w.customer(orgs["bolt"], "flux", "a1", "2026-01-05 23:30", "2026-01-06 00:45")
    w.customer(orgs["cyan"], "flux", "a1", "2026-01-04 23:00", "2026-01-05 00:30")
    w.other("sdxl", "l1", "2026-01-07 23:00", "2026-01-07 23:50")
    # Outside the period: no weight, no cost.
    w.customer(orgs["acme"], "sdxl", "l1", "2026-01-08 01:00", "2026-01-08 02:00")
    return w, orgs


# --- The reconcile invariant --------------------------------------------------------------------


def test_organizations_cost_reconciles_with_the_fully_loaded_cost_of_customer_jobs(data):
    w, orgs = data
    report = m.margins_report(START, END)
    oracle = w.oracle_by_group()
    unit = unit_cost_report(START, END)
    by_org = {r.key: r for r in report.organizations}

    # Each organization's GPU cost is the spec's fully loaded cost of its runs, job by job.
    for slug, org in orgs.items():
        expected = oracle["models"].get(str(org.pk), {}).get("fully_loaded_cost_usd", 0)
        got = by_org[slug].gpu_cost if slug in by_org else D(0)
        assert close(got, expected), slug
    customer = sum(
        (row["fully_loaded_cost_usd"] for g, row in oracle["models"].items() if g != "-"),
        Fraction(0),
    )
    orgs_total = sum((r.gpu_cost for r in report.organizations), D(0))
    assert close(orgs_total, customer)
    assert close(orgs_total, report.customer_gpu_cost)
    assert close(report.other_runs_cost, oracle["models"]["-"]["fully_loaded_cost_usd"])
    # … and with the rest it makes the period's whole infrastructure cost.
    assert close(report.infra_cost, D(unit["totals"]["infra_cost_usd"]))
    assert close(report.unattributed, D(unit["totals"]["unattributed_usd"]))
    assert close(orgs_total + report.other_runs_cost + report.unattributed, report.infra_cost)
    # The data exercise the idle shares: unallocated (a100's 01-07) and unattributed (spare).
    pools = {p["pool"]: p for p in unit["pools"]}
    assert D(pools["a100"]["unallocated_usd"]) > 0
    assert report.unattributed == D("24")
    assert customer > 0 and report.other_runs_cost > 0
    assert all(by_org[s].generations > 0 for s in ("acme", "bolt", "cyan", "echo"))


def test_plans_are_the_sums_of_their_organizations(data):
    report = m.margins_report(START, END)
    for plan in report.plans:
        members = [r for r in report.organizations if r.plan == plan.key]
        assert plan.organizations == len(members)
        assert close(plan.gpu_cost, sum((r.gpu_cost for r in members), D(0)))
        assert close(plan.revenue, sum((r.revenue for r in members), D(0)))
    assert close(sum((p.gpu_cost for p in report.plans), D(0)), report.customer_gpu_cost)
    assert {p.key for p in report.plans} == {"starter", "creator", "studio", "free"}


def test_grouping_runs_by_model_gives_the_unit_cost_reports_figures(data):
    """The grouped engine is the report's: group every run by its model, get its numbers."""
    unit = unit_cost_report(START, END)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE _t_by_model ON COMMIT DROP AS "
            "SELECT external_id, model_slug AS grp FROM infra_costs_gpurun"
        )
        costs = grouped_costs(make_period(START, END), group_table="_t_by_model")
    for row in unit["models"]:
        g = costs.groups[row["model"]]
        assert close(g.fully_loaded, D(row["fully_loaded_cost_usd"]))
        assert close(g.allocated, D(row["allocated_cost_usd"]))
        assert g.generations == row["generations"]
        assert g.failed == row["failed"]


# --- Revenue ------------------------------------------------------------------------------------


def _captured_job(org, *, credits: str, when: str) -> None:
    hold = spend_authorize(
        organization=org, amount=D(credits), key=f"job:{uuid.uuid4()}", now=at(when)
    )
    hold_capture(hold=hold, now=at(when) + timedelta(seconds=30))


def _plan_credits_left(org) -> D:
    return sum(
        (g.remaining for g in CreditGrant.objects.filter(account=account_of(org), source="plan")),
        D(0),
    )


def _pack_bought(org, *, credits: str, usd: str) -> None:
    grant = organization_grant(
        organization=org,
        amount=D(credits),
        source="purchase",
        reason="credits pack",
        idempotency_key=f"pack:{uuid.uuid4()}",
    )
    Purchase.objects.create(
        organization=org,
        kind="credit_pack",
        credits=D(credits),
        amount_usd=D(usd),
        status="paid",
        grant=grant,
    )


def test_credit_revenue_is_what_the_captured_credits_were_paid_for(data):
    """Plan credits are paid by the subscription (counted once, prorated); a pack's credits
    bring what the pack cost per credit when they are spent; the overage part its price."""
    _, orgs = data
    acme = orgs["acme"]  # starter: overage allowed at 0.025 USD a credit
    _captured_job(acme, credits="40", when="2026-01-05 10:00")  # from the plan's grant
    assert acme_row(m.margins_report(START, END)).credit_revenue == 0
    plan_left = _plan_credits_left(acme)
    _pack_bought(acme, credits="500", usd="10")  # 0.02 USD a credit
    _captured_job(acme, credits=str(plan_left + 20), when="2026-01-06 10:00")  # 20 from the pack
    _captured_job(acme, credits="500", when="2026-01-07 23:00")  # 480 pack + 20 overage
    _captured_job(acme, credits="100", when="2026-01-08 00:30")  # after the period
    _captured_job(orgs["bolt"], credits="7", when="2026-01-04 12:00")  # before it
    report = m.margins_report(START, END)
    row = acme_row(report)
    assert row.credits_captured == D(40) + plan_left + 20 + 500
    assert row.credit_revenue == D(500) * D("0.02") + D(20) * D("0.025")
    # starter: $9 a month; the period is 3 of January's 31 days.
    assert close(row.subscription_revenue, Fraction(9 * 3, 31))
    assert close(row.margin, row.revenue - row.gpu_cost - row.other_cost)
    dune = next(r for r in report.organizations if r.key == "dune")
    assert dune.subscription_revenue == 0  # free
    bolt = next(r for r in report.organizations if r.key == "bolt")
    assert bolt.credits_captured == 0


def test_a_partial_capture_counts_only_what_was_charged(data):
    _, orgs = data
    acme = orgs["acme"]
    _pack_bought(acme, credits="500", usd="10")
    spend = _plan_credits_left(acme)
    _captured_job(acme, credits=str(spend), when="2026-01-05 09:00")  # the plan's credits
    hold = spend_authorize(
        organization=acme, amount=D(100), key=f"job:{uuid.uuid4()}", now=at("2026-01-05 10:00")
    )
    hold_capture(hold=hold, amount=D(30), now=at("2026-01-05 10:01"))
    row = acme_row(m.margins_report(START, END))
    assert row.credits_captured == spend + 30
    assert row.credit_revenue == D(30) * D("0.02")


def acme_row(report):
    return next(r for r in report.organizations if r.key == "acme")


def test_months_in_counts_each_month_by_its_own_length():
    assert m.months_in(date(2026, 1, 1), date(2026, 2, 1)) == 1
    assert m.months_in(date(2026, 2, 15), date(2026, 3, 1)) == D(14) / D(28)
    assert m.months_in(date(2026, 1, 17), date(2026, 3, 17)) == D(15) / D(31) + 1 + D(16) / D(31)


def test_least_profitable_organizations_and_plans_come_first(data):
    report = m.margins_report(START, END)
    margins = [r.margin for r in report.organizations]
    assert margins == sorted(margins)
    assert [p.margin for p in report.plans] == sorted(p.margin for p in report.plans)


def test_models_priced_below_their_cost_are_flagged_first(data):
    report = m.margins_report(START, END)
    flagged = [x.model for x in report.models if x.below_cost]
    assert "video" in flagged and "sdxl" not in flagged
    assert report.models[0].below_cost
    sdxl = next(x for x in report.models if x.model == "sdxl")
    assert sdxl.price_usd == D("4.00")
    assert sdxl.margin_per_generation == sdxl.price_usd - sdxl.cost_per_generation


def test_margin_percent_shows_its_sign():
    assert m.signed_percent(D("0.125")) == "+12.5%"
    assert m.signed_percent(D("-0.03")) == "\u22123.0%"
    assert m.signed_percent(D(0)) == "±0.0%"
    assert m.signed_percent(None) == "—"


# --- The page and its CSV -----------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    staff = User.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)
    client.force_login(staff)
    return client


CSVS = [f"{URL}organizations.csv", f"{URL}plans.csv", f"{URL}models.csv"]


@pytest.mark.parametrize("url", [URL, *CSVS])
def test_anonymous_visitors_are_sent_to_log_in(client, url):
    response = client.get(url, PERIOD)
    assert response.status_code == 302
    assert "/login" in response["Location"]


@pytest.mark.parametrize("url", [URL, *CSVS])
def test_customers_get_a_404(client, url):
    user = UserFactory()
    make_org(slug="cust", owner=user)
    client.force_login(user)
    assert client.get(url, PERIOD).status_code == 404


def test_the_page_lists_organizations_plans_and_models(staff_client, data):
    response = staff_client.get(URL, PERIOD)
    assert response.status_code == 200
    html = response.content.decode()
    for slug in ("acme", "bolt", "cyan", "echo"):
        assert f'data-org="{slug}"' in html
    assert 'data-plan="studio"' in html
    assert 'data-model="video"' in html and "Below cost" in html
    assert 'data-testid="reconcile"' in html
    assert "organizations.csv?" in html


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-01-08", "end": "2026-01-05"},
        {"start": "2026-01-05", "end": "not a date"},
        {"start": "2026-01-05", "end": "2026-01-08", "timezone": "Mars/Olympus"},
    ],
)
def test_a_bad_period_is_a_form_error(staff_client, params):
    response = staff_client.get(URL, params)
    assert response.status_code == 400
    html = response.content.decode()
    assert "field-error" in html
    csv_response = staff_client.get(f"{URL}organizations.csv", params)
    assert csv_response.status_code == 400


def _csv(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_organizations_csv_has_the_reports_rows_in_order(staff_client, data):
    _, orgs = data
    _captured_job(orgs["cyan"], credits="300", when="2026-01-06 09:00")
    report = m.margins_report(START, END)
    rows = _csv(staff_client.get(f"{URL}organizations.csv", PERIOD))
    assert [r["organization"] for r in rows] == [r.key for r in report.organizations]
    first = rows[0]
    assert list(first)[:3] == ["organization", "name", "plan"]
    for row, exp in zip(rows, report.organizations, strict=True):
        assert D(row["gpu_cost_usd"]) == exp.gpu_cost.quantize(TOL)
        assert D(row["revenue_usd"]) == exp.revenue.quantize(TOL)
        assert row["plan"] == exp.plan
    cyan = next(r for r in rows if r["organization"] == "cyan")
    assert D(cyan["credits_captured"]) == D("300")
    assert D(cyan["credit_revenue_usd"]) == D("0.000000")  # the plan's credits
    total = sum(D(r["gpu_cost_usd"]) for r in rows)
    assert abs(total - report.customer_gpu_cost) <= TOL * len(rows)


def test_plans_and_models_csv(staff_client, data):
    plans = _csv(staff_client.get(f"{URL}plans.csv", PERIOD))
    assert {r["plan"] for r in plans} == {"starter", "creator", "studio", "free"}
    assert sum(int(r["organizations"]) for r in plans) == 5
    models = _csv(staff_client.get(f"{URL}models.csv", PERIOD))
    video = next(r for r in models if r["model"] == "video")
    assert video["below_cost"] == "yes"
    assert D(video["price_usd"]) == D("0.010000")
    assert next(r for r in models if r["model"] == "sdxl")["below_cost"] == "no"


def test_staff_nav_links_to_the_page(staff_client):
    html = staff_client.get(URL).content.decode()
    assert f'href="{URL}" aria-current="page"' in html
    assert Plan.objects.exists()
