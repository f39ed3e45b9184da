"""Staff API of infra costs: the unit-cost report and bulk ingestion. Staff only: anonymous
401, a logged-in non-staff user 403, an API key 403 (keys are never staff)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from accounts import services
from infra_costs.models import GpuRun, Node, NodePool, PoolRate, UptimeInterval
from tests.config.helpers import assert_problem, bearer
from tests.factories import UserFactory, make_org
from tests.infra_costs.conftest import DATA

pytestmark = pytest.mark.django_db

UNIT_COSTS = "/api/v1/costs/unit-costs/"
QUERY = {"start": "2026-01-05", "end": "2026-01-08"}
POOLS = [
    {
        "pool": "gpu1",
        "gpu_type": "A100",
        "hourly_rate_usd": "3.60",
        "effective_from": "2026-01-01T00:00:00+00:00",
    },
    {
        "pool": "gpu1",
        "gpu_type": "A100",
        "hourly_rate_usd": 7.2,
        "effective_from": "2026-01-06T00:00:00+00:00",
    },
    {
        "pool": "gpu2",
        "gpu_type": "L4",
        "hourly_rate_usd": "1.00",
        "effective_from": "2026-01-01T00:00:00+00:00",
    },
]


@pytest.fixture
def staff(api_client):
    api_client.force_login(UserFactory(is_staff=True))
    return api_client


def _load_example() -> None:
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", UNIT_COSTS),
        ("post", "/api/v1/costs/pools/"),
        ("post", "/api/v1/costs/uptime/"),
        ("post", "/api/v1/costs/jobs/"),
    ],
)
def test_staff_only(api_client, method, url):
    call = getattr(api_client, method)
    kwargs = {"data": QUERY} if method == "get" else {"data": [], "format": "json"}
    assert_problem(call(url, **kwargs), status=401, code="authentication_failed")
    member = UserFactory()
    make_org(slug="acme", owner=member)
    api_client.force_login(member)
    assert_problem(call(url, **kwargs), status=403, code="permission_denied")
    api_client.logout()
    _key, raw = services.api_key_create(
        organization=make_org(slug="keyed", plan="starter"), name="k", actor=None
    )
    assert_problem(call(url, **kwargs, **bearer(raw)), status=403, code="permission_denied")
    assert NodePool.objects.count() == 0


def test_unit_costs_same_json_as_the_command(staff):
    _load_example()
    response = staff.get(UNIT_COSTS, QUERY)
    assert response.status_code == 200
    out = io.StringIO()
    call_command(
        "unit_costs",
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-08",
        "--format",
        "json",
        stdout=out,
    )
    assert response.json() == json.loads(out.getvalue())
    assert response.json()["totals"]["weighted_avg_cost_per_generation_usd"] == "27.600000"


def test_unit_costs_options_and_bad_query(staff):
    _load_example()
    body = staff.get(
        UNIT_COSTS, {**QUERY, "window": "hour", "idle_policy": "separate", "timezone": "UTC"}
    ).json()
    assert body["period"]["windows"] == 72
    assert body["idle"][0]["pool"] == "gpu1"
    problem = assert_problem(
        staff.get(UNIT_COSTS, {"start": "2026-01-05", "end": "2026-13-01", "window": "week"}),
        status=400,
        code="validation_error",
    )
    assert set(problem["errors"]) == {"end", "window"}
    problem = assert_problem(
        staff.get(UNIT_COSTS, {**QUERY, "timezone": "Mars/Olympus"}),
        status=400,
        code="validation_error",
    )
    assert "timezone" in problem["errors"]
    assert_problem(
        staff.get(UNIT_COSTS, {"start": "2026-01-08", "end": "2026-01-05"}),
        status=400,
        code="validation_error",
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"start": "0001-01-01"}, "start"),
        ({"end": "9999-12-31"}, "end"),
        ({"window": ""}, "window"),
        ({"timezone": ""}, "timezone"),
    ],
)
def test_unit_costs_far_dates_and_empty_parameters_are_a_400(staff, query, field):
    problem = assert_problem(
        staff.get(UNIT_COSTS, {**QUERY, **query}), status=400, code="validation_error"
    )
    assert field in problem["errors"]


def test_import_rows_with_unknown_fields_and_bad_skip_invalid_are_refused(staff):
    rows = [{**POOLS[0], "discount": "0.5"}]
    problem = assert_problem(
        staff.post("/api/v1/costs/pools/", rows, format="json"),
        status=400,
        code="validation_error",
    )
    assert "unexpected field(s) discount" in problem["errors"]["0"][0]
    problem = assert_problem(
        staff.post("/api/v1/costs/pools/?skip_invalid=", POOLS, format="json"),
        status=400,
        code="validation_error",
    )
    assert "skip_invalid" in problem["errors"]
    assert PoolRate.objects.count() == 0


def test_bulk_ingestion_idempotent(staff):
    response = staff.post("/api/v1/costs/pools/", POOLS, format="json")
    assert response.status_code == 200
    assert response.json() == {"imported": 3, "already_present": 0, "invalid": 0, "errors": {}}
    uptime = [
        {
            "node": "n1",
            "pool": "gpu1",
            "started_at": "2026-01-05T00:00:00Z",
            "ended_at": "2026-01-05T12:00:00Z",
        },
        {
            "node": "n3",
            "pool": "gpu2",
            "started_at": "2026-01-06T00:00:00+00:00",
            "ended_at": "2026-01-07T00:00:00+00:00",
        },
    ]
    assert staff.post("/api/v1/costs/uptime/", uptime, format="json").json()["imported"] == 2
    jobs = [
        {
            "external_id": "j1",
            "model": "model-a",
            "node": "n1",
            "started_at": "2026-01-05T01:00:00Z",
            "finished_at": "2026-01-05T01:10:00Z",
            "status": "succeeded",
        },
    ]
    assert staff.post("/api/v1/costs/jobs/", jobs, format="json").json()["imported"] == 1
    again = staff.post("/api/v1/costs/jobs/", jobs, format="json").json()
    assert again == {"imported": 0, "already_present": 1, "invalid": 0, "errors": {}}
    assert GpuRun.objects.get().source == "imported"


def test_bad_batch_refused_with_errors_by_row_index(staff):
    staff.post("/api/v1/costs/pools/", POOLS, format="json")
    rows = [
        {
            "node": "n1",
            "pool": "gpu1",
            "started_at": "2026-01-05T00:00:00Z",
            "ended_at": "2026-01-05T12:00:00Z",
        },
        {
            "node": "n2",
            "pool": "gpu9",
            "started_at": "2026-01-05T00:00:00Z",
            "ended_at": "2026-01-05T12:00:00Z",
        },
        {
            "node": "n2",
            "pool": "gpu1",
            "started_at": "2026-01-05T00:00:00",
            "ended_at": "2026-01-04T12:00:00Z",
        },
    ]
    problem = assert_problem(
        staff.post("/api/v1/costs/uptime/", rows, format="json"),
        status=400,
        code="validation_error",
    )
    assert set(problem["errors"]) == {"1", "2"}
    assert problem["errors"]["1"] == ["unknown pool 'gpu9'"]
    assert "no UTC offset" in problem["errors"]["2"][0]
    assert UptimeInterval.objects.count() == 0 and Node.objects.count() == 0
    body = staff.post("/api/v1/costs/uptime/?skip_invalid=true", rows, format="json").json()
    assert (body["imported"], body["invalid"]) == (1, 2)
    assert set(body["errors"]) == {"1", "2"}
    assert UptimeInterval.objects.count() == 1


def test_body_must_be_a_list(staff):
    problem = assert_problem(
        staff.post("/api/v1/costs/pools/", {"pool": "x"}, format="json"),
        status=400,
        code="validation_error",
    )
    assert "list" in problem["detail"]
    assert PoolRate.objects.count() == 0


def test_schema_documents_the_endpoints(staff):
    schema = staff.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/costs/unit-costs/", "/api/v1/costs/uptime/", "/api/v1/costs/jobs/"):
        assert path in text
