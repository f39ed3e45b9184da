"""Usage events beyond jobs (issue 15): `POST /api/v1/usage-events/` charges each metered event
to the ledger exactly once, a batch all or nothing, replays without a second effect, concurrent
duplicates charged once (real threads, real PostgreSQL)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.utils import timezone

from accounts import services as account_services
from accounts.models import AuditEvent
from credits.models import CreditHold, EntryKind, LedgerEntry
from generations.metering.models import Meter, UsageEvent
from generations.metering.services import meter_rate_set
from tests.config.helpers import assert_problem, bearer
from tests.factories import account_of, make_account

URL = "/api/v1/usage-events/"


@pytest.fixture
def tokens():
    meter = Meter.objects.create(slug="llm-tokens", name="LLM tokens", unit="token")
    meter_rate_set(
        meter=meter,
        credits_per_unit="0.002",
        reason="launch",
        actor=None,
        effective_from=timezone.now() - timedelta(days=60),
    )
    return meter


@pytest.fixture
def acme():
    return make_account(slug="acme", plan="studio", credits="100").organization


@pytest.fixture
def acme_key(acme):
    return account_services.api_key_create(organization=acme, name="k", actor=None)[1]


def event(event_id="e-1", quantity="1250", **extra):
    return {
        "id": event_id,
        "type": "llm-tokens",
        "time": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "quantity": quantity,
        **extra,
    }


def send(client, key, events):
    body = {"events": events} if not isinstance(events, dict) else events
    return client.post(URL, data=json.dumps(body), content_type="application/json", **bearer(key))


def writes():
    return (UsageEvent.objects.count(), CreditHold.objects.count(), LedgerEntry.objects.count())


@pytest.mark.django_db
def test_a_batch_is_charged_once_per_event_and_shows_in_usage_and_ledger(
    client, acme, acme_key, tokens
):
    balance = account_of(acme).balance
    response = send(client, acme_key, [event("e-1", "1250"), event("e-2", 100)])
    assert response.status_code == 200, response.content
    rows = response.json()["events"]
    assert [(r["id"], r["credits"], r["replayed"]) for r in rows] == [
        ("e-1", "2.500", False),
        ("e-2", "0.200", False),
    ]
    account = account_of(acme)
    assert (account.balance, account.held) == (balance - D("2.7"), D(0))
    captures = LedgerEntry.objects.filter(account=account, kind=EntryKind.CAPTURE)
    assert sorted(captures.values_list("idempotency_key", flat=True)) == [
        "capture:usage:e-1",
        "capture:usage:e-2",
    ]
    usage = client.get("/api/v1/usage/?group_by=model", **bearer(acme_key)).json()
    row = next(r for r in usage["rows"] if r["model"] == "meter:llm-tokens")
    assert (row["credits_spent"], row["generations"]) == ("2.700", 0)
    ledger = client.get("/api/v1/ledger/?kind=capture", **bearer(acme_key)).json()
    assert {e["amount"] for e in ledger["results"]} == {"2.500", "0.200"}
    assert AuditEvent.objects.filter(action="usage_events.recorded").count() == 1


@pytest.mark.django_db
def test_a_replayed_batch_returns_the_same_result_and_has_no_second_effect(
    client, acme, acme_key, tokens
):
    batch = [event("e-1"), event("e-2", "10")]
    first = send(client, acme_key, batch).json()["events"]
    before, balance = writes(), account_of(acme).balance
    again = send(client, acme_key, batch).json()["events"]
    assert writes() == before and account_of(acme).balance == balance
    assert [r["replayed"] for r in again] == [True, True]
    assert [{**r, "replayed": None} for r in again] == [{**r, "replayed": None} for r in first]
    # The same id twice in one batch is one event.
    third = send(client, acme_key, [event("e-3")] * 2)
    third = third.json()["events"]
    assert [r["replayed"] for r in third] == [False, True]
    assert UsageEvent.objects.filter(event_id="e-3").count() == 1


@pytest.mark.django_db
def test_an_id_reused_with_other_content_is_a_conflict_and_writes_nothing(client, acme_key, tokens):
    send(client, acme_key, [event("e-1", "5")])
    before = writes()
    response = send(client, acme_key, [event("e-9", "1"), event("e-1", "6")])
    body = assert_problem(response, status=409, code="idempotency_conflict")
    assert "events.1.id" in body["errors"]
    assert writes() == before  # e-9 was not recorded either: all or nothing


@pytest.mark.django_db
def test_one_bad_event_refuses_the_batch_naming_it(client, acme_key, tokens):
    before = writes()
    response = send(client, acme_key, [event("e-1"), event("e-2", "-3"), event("e-3", "x")])
    body = assert_problem(response, status=400, code="validation_error")
    assert set(body["errors"]) == {"events.1.quantity", "events.2.quantity"}
    assert writes() == before


@pytest.mark.django_db
def test_a_batch_beyond_the_credits_is_refused_whole(client, acme, acme_key, tokens):
    before = writes()
    response = send(client, acme_key, [event("e-1", "1"), event("e-2", "1000000000")])
    assert_problem(response, status=402, code="insufficient_credits")
    assert writes() == before


def _past(days: int) -> str:
    return (timezone.now() - timedelta(days=days)).isoformat()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "bad\x00id"}, "id"),
        ({"id": ""}, "id"),
        ({"id": "x" * 201}, "id"),
        ({"quantity": "1e400"}, "quantity"),
        ({"quantity": str(10**13)}, "quantity"),
        ({"quantity": 10**400}, "quantity"),
        ({"quantity": "-1"}, "quantity"),
        ({"quantity": "0"}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": "0.0000001"}, "quantity"),
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"time": "2026-02-30T10:00:00Z"}, "time"),
        ({"time": "2025-02-29T00:00:00+00:00"}, "time"),  # not a leap year
        ({"time": "2028-02-29T00:00:00+00:00"}, "time"),  # a real date, but in the future
        ({"time": "1970-01-01T00:00:00Z"}, "time"),
        ({"time": "2026-12-31T24:00:00Z"}, "time"),
        ({"time": "2026-01-05T10:00:00"}, "time"),  # no offset
        ({"time": _past(40)}, "time"),
        ({"type": "no-such-meter"}, "type"),
        ({"subject": "a\x00b"}, "subject"),
        ({"data": {"k": "a\x00b"}}, "data"),
        ({"data": {"k": "x" * 5000}}, "data"),
        ({"data": [1]}, "data"),
        ({"specversion": "0.3"}, "specversion"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_events_are_a_400_problem_naming_the_field(client, acme_key, tokens, change, field):
    before = writes()
    response = send(client, acme_key, [{**event(), **change}])
    body = assert_problem(response, status=400, code="validation_error")
    # A NUL is refused by the JSON parser before any field is read (it names no field).
    assert f"events.0.{field}" in body.get("errors", {}) or "NUL" in body["detail"], body
    assert "\x00" not in response.content.decode()
    assert writes() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [{"events": []}, {"events": [event(f"e-{i}") for i in range(101)]}, {"events": "x"}, {}],
)
def test_bad_batches_are_refused(client, acme_key, tokens, body):
    assert_problem(send(client, acme_key, body), status=400, code="validation_error")
    assert writes() == (0, 0, LedgerEntry.objects.count())


@pytest.mark.django_db
def test_the_price_in_force_at_the_event_time_applies(client, acme_key, tokens):
    meter_rate_set(meter=tokens, credits_per_unit="0.004", reason="up", actor=None)
    old = event("old", "1000", time=(timezone.now() - timedelta(days=1)).isoformat())
    rows = send(client, acme_key, [old, event("new", "1000", time=timezone.now().isoformat())])
    assert [r["credits"] for r in rows.json()["events"]] == ["2.000", "4.000"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_events_are_charged_once(client, tokens):
    account = make_account(slug="acme", plan="studio", credits="100")
    acme = account.organization
    key = account_services.api_key_create(organization=acme, name="k", actor=None)[1]
    balance = account_of(acme).balance
    batch = [event("dup-1", "500"), event("dup-2", "500", time=datetime.now(UTC).isoformat())]
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def worker():
        from django.test import Client

        try:
            barrier.wait()
            order = list(reversed(batch)) if threading.get_ident() % 2 else batch
            statuses.append(send(Client(), key, order).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    assert UsageEvent.objects.count() == 2
    assert CreditHold.objects.filter(key__startswith="usage:").count() == 2
    assert account_of(acme).balance == balance - D(2)


@pytest.mark.django_db
def test_meters_are_priced_in_versions_from_the_admin(client):
    from django.urls import reverse

    from accounts.models import User
    from generations.metering.models import MeterRate

    client.force_login(User.objects.create_superuser(email="r@example.com", password="pw-1234-x"))
    url = reverse("admin:generations_meter_add")
    form = {
        "slug": "gb-days",
        "name": "Storage",
        "unit": "GB-day",
        "is_active": "on",
        "rates-TOTAL_FORMS": "0",
        "rates-INITIAL_FORMS": "0",
    }
    refused = client.post(url, {**form, "new_price": "-1", "price_reason": "x"})
    assert refused.status_code == 200 and "new_price" in refused.context["adminform"].form.errors
    assert not Meter.objects.exists()
    response = client.post(url, {**form, "new_price": "0.5", "price_reason": "launch"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    rate = MeterRate.objects.get(meter__slug="gb-days")
    assert (rate.credits_per_unit, rate.reason, rate.set_by.email) == (
        D("0.5"),
        "launch",
        "r@example.com",
    )
    assert AuditEvent.objects.filter(action="meter_rate.set").count() == 1


@pytest.mark.django_db
def test_usage_events_do_not_count_as_generations_for_the_daily_cap(client, acme, acme_key, tokens):
    from accounts.models import Plan
    from generations import services
    from tests.factories import make_ai_model

    Plan.objects.filter(slug="studio").update(daily_generation_cap=1)
    make_ai_model("sdxl", credits="5")
    send(client, acme_key, [event("e-1"), event("e-2", "7")])
    acme.subscription.plan.refresh_from_db()
    job, created = services.generation_submit(
        organization=acme, model_slug="sdxl", params={"prompt": "a"}
    )
    assert created and job.credits_held == D(5)
