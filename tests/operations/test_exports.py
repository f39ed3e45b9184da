"""Exports for analysts: each dataset as CSV and Parquet through the staff API (session or
staff token) with the reports' own figures; bad periods are 400 problems; staff only."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from accounts import services
from config.exports import datasets
from infra_costs.allocation import unit_cost_report
from operations.tokens.services import staff_token_create
from planning import margins as m
from tests.config.helpers import assert_problem, bearer
from tests.factories import UserFactory, make_account, make_org
from tests.operations.analytics_scenario import END, QUERY, START, seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(api_client):
    api_client.force_login(UserFactory(is_staff=True))
    return api_client


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def _csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(_body(response).decode())))


def _parquet(response):
    return pq.read_table(io.BytesIO(_body(response)))


def test_unit_cost_models_csv_and_parquet_equal_the_report(staff):
    seed()
    report = unit_cost_report(START, END, window="day")
    csv_rows = _csv(staff.get("/api/v1/exports/unit-costs-models.csv", QUERY))
    table = _parquet(staff.get("/api/v1/exports/unit-costs-models.parquet", QUERY))
    assert [r["model"] for r in csv_rows] == [r["model"] for r in report["models"]]
    assert table.column("model").to_pylist() == [r["model"] for r in report["models"]]
    for expected, got, row in zip(report["models"], csv_rows, table.to_pylist(), strict=True):
        assert got["fully_loaded_cost_usd"] == expected["fully_loaded_cost_usd"]
        assert row["fully_loaded_cost_usd"] == Decimal(expected["fully_loaded_cost_usd"])
        assert row["generations"] == expected["generations"]
    assert str(table.schema.field("cost_per_generation_usd").type) == "decimal128(38, 6)"


@pytest.mark.parametrize("slug", ["unit-costs-pools", "unit-costs-stages"])
def test_other_unit_cost_tables_match_the_report(staff, slug):
    seed()
    report = unit_cost_report(START, END, window="hour")
    key = slug.removeprefix("unit-costs-")
    rows = _csv(staff.get(f"/api/v1/exports/{slug}", {**QUERY, "window": "hour"}))
    assert len(rows) == len(report[key])
    if key == "pools":
        assert {r["pool"]: r["cost_usd"] for r in rows} == {
            p["pool"]: p["cost_usd"] for p in report["pools"]
        }


def test_usage_counts_jobs_per_org_model_and_day(staff):
    seed()
    table = _parquet(staff.get("/api/v1/exports/usage", {**QUERY, "format": "parquet"}))
    rows = {(str(r["day"]), r["organization"], r["model"]): r for r in table.to_pylist()}
    acme_flux = rows[("2026-01-05", "acme", "flux")]
    assert (acme_flux["jobs"], acme_flux["succeeded"], acme_flux["failed"]) == (2, 1, 1)
    assert rows[("2026-01-05", "bolt", "flux")]["jobs"] == 1
    assert sum(r["jobs"] for r in rows.values()) == 6
    # A day in another zone moves the late job to the next local day.
    tokyo = _csv(staff.get("/api/v1/exports/usage.csv", {**QUERY, "timezone": "Asia/Tokyo"}))
    assert {(r["day"], r["organization"], r["model"]) for r in tokyo} >= {
        ("2026-01-06", "bolt", "flux")
    }


def test_margins_exports_equal_the_margins_report(staff):
    seed()
    report = m.margins_report(START, END)
    orgs = _csv(staff.get("/api/v1/exports/margins-organizations.csv", QUERY))
    expected = m.rows_as_csv(report.organizations, kind="organizations")
    assert [r["organization"] for r in orgs] == [r.key for r in report.organizations]
    assert [r["margin_usd"] for r in orgs] == [
        line.split(",")[12] for line in expected.splitlines()[1:]
    ]
    plans = _parquet(staff.get("/api/v1/exports/margins-plans.parquet", QUERY))
    assert plans.column("plan").to_pylist() == [r.key for r in report.plans]
    models = _parquet(staff.get("/api/v1/exports/margins-models.parquet", QUERY))
    assert models.column("below_cost").to_pylist() == [x.below_cost for x in report.models]


def _today_query() -> dict:
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.now().date()
    return {"start": today.isoformat(), "end": (today + timedelta(days=1)).isoformat()}


def test_ledger_entries_of_the_period_oldest_first(staff):
    account = make_account(plan="starter", slug="acme", credits="50")
    rows = _csv(staff.get("/api/v1/exports/ledger-entries.csv", _today_query()))
    entries = list(account.entries.order_by("created_at", "id"))
    assert [int(r["id"]) for r in rows] == [e.id for e in entries]
    assert {r["organization"] for r in rows} == {"acme"}
    account.refresh_from_db()
    assert sum(Decimal(r["balance_delta"]) for r in rows) == account.balance
    old = {"start": "2020-01-01", "end": "2020-01-02"}
    empty = _parquet(staff.get("/api/v1/exports/ledger-entries.parquet", old))
    assert empty.num_rows == 0 and "balance_after" in empty.column_names


def test_large_exports_are_written_in_batches_with_the_same_rows(staff, monkeypatch):
    """Bounded memory: Parquet is written batch by batch and the ledger read in chunks; tiny
    sizes here make every row cross a boundary, and the file still holds every row once."""
    from operations.exports import datasets as ops_datasets
    from operations.exports import formats

    monkeypatch.setattr(formats, "BATCH_ROWS", 2)
    monkeypatch.setattr(ops_datasets, "LEDGER_CHUNK", 3)
    for slug in ("a", "b", "c"):
        make_account(plan="starter", slug=f"org-{slug}", credits="10")
    csv_rows = _csv(staff.get("/api/v1/exports/ledger-entries.csv", _today_query()))
    table = _parquet(staff.get("/api/v1/exports/ledger-entries.parquet", _today_query()))
    assert len(csv_rows) >= 5
    assert table.column("id").to_pylist() == [int(r["id"]) for r in csv_rows]
    assert table.column("balance_after").to_pylist() == [
        Decimal(r["balance_after"]) for r in csv_rows
    ]


def test_text_that_spreadsheets_would_run_is_defused_in_csv(staff):
    from accounts.models import Organization

    seed()
    Organization.objects.filter(slug="acme").update(name="=HYPERLINK(1)")
    rows = _csv(staff.get("/api/v1/exports/margins-organizations.csv", QUERY))
    names = {r["organization"]: r["name"] for r in rows}
    assert names["acme"] == "'=HYPERLINK(1)"
    assert any(r["margin_usd"].startswith("-") for r in rows)  # numbers keep their sign
    parquet = _parquet(staff.get("/api/v1/exports/margins-organizations.parquet", QUERY))
    assert "=HYPERLINK(1)" in parquet.column("name").to_pylist()  # typed data as it is


@pytest.mark.parametrize(
    "query",
    [
        {"start": "2026-02-29", "end": "2026-03-02"},  # not a leap year
        {"start": "2026-04-31", "end": "2026-05-02"},
        {"start": "2026-01-05", "end": "2026-01-05"},  # empty period
        {"start": "2026-01-08", "end": "2026-01-05"},
        {"start": "0001-01-01", "end": "2026-01-05"},
        {"start": "2026-01-05", "end": "9999-12-31"},
        {"start": "2026-01-05"},
        {"start": "2026-01-05", "end": "2026-01-08", "timezone": "Mars/Base"},
        {"start": "2026-01-05", "end": "2026-01-08", "window": "week"},
        {"start": "2026-01-05", "end": "2026-01-08", "format": "xlsx"},
        {"start": "", "end": "2026-01-08"},
    ],
)
@pytest.mark.parametrize("slug", sorted(datasets()))
def test_bad_parameters_are_400_problems(staff, slug, query):
    assert_problem(staff.get(f"/api/v1/exports/{slug}", query), status=400, code="validation_error")


def test_unknown_dataset_is_404(staff):
    assert_problem(staff.get("/api/v1/exports/salaries.csv", QUERY), status=404, code="not_found")


def test_index_lists_the_datasets(staff):
    body = staff.get("/api/v1/exports/").json()
    assert [d["dataset"] for d in body["datasets"]] == list(datasets())
    assert body["formats"] == ["csv", "parquet"]


def test_staff_token_downloads_and_others_are_refused(api_client):
    seed()
    url = "/api/v1/exports/unit-costs-models.csv"
    _token, raw = staff_token_create(user=UserFactory(is_staff=True), name="bi", actor=None)
    response = api_client.get(url, QUERY, **bearer(raw))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "unit-costs-models_2026-01-05_2026-01-08.csv" in response["Content-Disposition"]
    assert_problem(api_client.get(url, QUERY), status=401, code="authentication_failed")
    _key, key = services.api_key_create(organization=make_org(slug="keyed"), name="k", actor=None)
    assert_problem(api_client.get(url, QUERY, **bearer(key)), status=403, code="permission_denied")
    api_client.force_login(UserFactory())
    assert_problem(api_client.get(url, QUERY), status=403, code="permission_denied")


def test_staff_page_links_every_dataset_in_both_formats(client):
    client.force_login(UserFactory(is_staff=True))
    page = client.get("/staff/exports/", QUERY)
    assert page.status_code == 200
    html = page.content.decode()
    for slug in datasets():
        assert f"/api/v1/exports/{slug}.csv?start=2026-01-05" in html
        assert f"/api/v1/exports/{slug}.parquet?" in html
    bad = client.get("/staff/exports/", {"start": "2026-02-30", "end": "2026-03-02"})
    assert bad.status_code == 400
    client.force_login(UserFactory())
    assert client.get("/staff/exports/").status_code == 404
