"""The typed client against a live server (pytest-django's live_server): submit, run the job
(the live server has no worker: the test runs it, as the Celery task would), wait(), idempotent
retries that reuse the Idempotency-Key, and problem+json answers as typed exceptions."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import requests
from gpucredits_client import (
    AuthenticationError,
    Client,
    IdempotencyConflict,
    InsufficientCredits,
    Job,
    NotFound,
    RateLimited,
    ServerBusy,
    ValidationError,
    WaitTimeout,
)

from accounts import services as account_services
from generations import services as generation_services
from generations.models import Job as JobRow
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db(transaction=True)
PROMPT = {"prompt": "a lighthouse at dusk", "seed": 7}


@pytest.fixture(autouse=True)
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def sdxl():
    return make_ai_model("sdxl", credits="5")


@pytest.fixture
def org():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def api_key(org):
    return account_services.api_key_create(organization=org, name="client", actor=None)[1]


class RecordingSession(requests.Session):
    """A real session that records what it sent and can lose answers or answer for the
    server: `script` is a list of actions for the next requests — "lose" (send it, then raise
    ConnectionError as if the answer was lost), or a (status, headers, json) tuple returned
    without reaching the server."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.script: list = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        action = self.script.pop(0) if self.script else None
        if action is None:
            return super().send(request, **kwargs)
        if action == "lose":
            super().send(request, **kwargs)
            raise requests.ConnectionError("connection reset by peer")
        status, headers, body = action
        response = requests.Response()
        response.status_code = status
        response.headers.update({"Content-Type": "application/problem+json", **headers})
        response._content = requests.compat.json.dumps(body).encode()
        response.request = request
        return response


@pytest.fixture
def session():
    return RecordingSession()


@pytest.fixture
def api(live_server, api_key, session):
    client = Client(live_server.url, api_key, session=session, timeout=10)
    client.slept = []
    client._sleep = client.slept.append  # record backoffs instead of sleeping
    return client


def test_submit_run_and_wait_returns_the_succeeded_job_and_its_charge(api, sdxl):
    models = {m.slug: m for m in api.models()}
    assert models["sdxl"].credits == Decimal(5)
    before = api.balance()

    job = api.submit("sdxl", PROMPT)
    assert isinstance(job, Job)
    assert (job.status, job.model, job.params, job.credits_held) == (
        "queued",
        "sdxl",
        PROMPT,
        Decimal(5),
    )
    assert api.balance().held == before.held + Decimal(5)

    assert generation_services.generation_run(job_id=job.id) == "succeeded"
    done = api.wait(job.id, timeout=10)
    assert done.status == "succeeded" and done.is_final
    assert done.credits_charged == Decimal(5)
    assert done.finished_at is not None and done.error is None

    after = api.balance()
    assert after.held == before.held
    assert after.balance == before.balance - Decimal(5)
    assert [j.id for j in api.iter_generations(status="succeeded")] == [job.id]
    usage = api.usage(group_by="model")
    assert usage.totals.generations == 1
    assert usage.totals.credits_spent == Decimal(5)


def test_wait_gives_up_on_a_job_that_never_runs(api, sdxl):
    job = api.submit("sdxl", PROMPT)
    with pytest.raises(WaitTimeout) as exc:
        api.wait(job.id, timeout=0.2, poll_interval=0.05)
    assert exc.value.last_status == "queued"
    assert api.cancel(job.id).status == "cancelled"


def test_a_lost_answer_is_retried_with_the_same_idempotency_key_and_one_job(api, session, sdxl):
    session.script = ["lose", "lose"]
    job = api.submit("sdxl", PROMPT)

    keys = [r.headers["Idempotency-Key"] for r in session.sent]
    assert len(keys) == 3 and len(set(keys)) == 1
    assert len(api.slept) == 2 and all(s > 0 for s in api.slept)
    assert list(JobRow.objects.values_list("pk", flat=True)) == [uuid.UUID(str(job.id))]
    assert api.balance().held == Decimal(5)  # held once


def test_resubmitting_with_the_callers_key_returns_the_same_job(api, sdxl):
    first = api.submit("sdxl", PROMPT, idempotency_key="order-42")
    again = api.submit("sdxl", PROMPT, idempotency_key="order-42")
    assert again.id == first.id
    assert JobRow.objects.count() == 1
    with pytest.raises(IdempotencyConflict) as exc:
        api.submit("sdxl", {"prompt": "something else"}, idempotency_key="order-42")
    assert (exc.value.status, exc.value.code) == (409, "idempotency_conflict")


def test_429_and_503_are_retried_after_retry_after(api, session, sdxl):
    session.script = [
        (429, {"Retry-After": "3"}, {"status": 429, "code": "rate_limited", "detail": "Slow."}),
        (503, {"Retry-After": "1"}, {"status": 503, "code": "server_busy", "detail": "Busy."}),
    ]
    job = api.submit("sdxl", PROMPT)
    assert api.slept == [3.0, 1.0]
    assert len({r.headers["Idempotency-Key"] for r in session.sent}) == 1
    assert JobRow.objects.get().pk == uuid.UUID(str(job.id))


def test_a_retry_after_beyond_the_limit_is_raised_not_waited(api, session, sdxl):
    session.script = [(429, {"Retry-After": "3600"}, {"code": "rate_limited", "detail": "x"})]
    with pytest.raises(RateLimited) as exc:
        api.submit("sdxl", PROMPT)
    assert exc.value.retry_after == 3600 and api.slept == []
    session.script = [(503, {}, {"code": "server_busy", "detail": "Busy."})] * 4
    with pytest.raises(ServerBusy):
        api.balance()
    assert len(api.slept) == 3  # max_retries


def test_problem_answers_raise_typed_errors(live_server, api, sdxl):
    with pytest.raises(AuthenticationError) as exc:
        Client(live_server.url, "gpc_not_a_key").balance()
    assert exc.value.status == 401

    with pytest.raises(ValidationError) as exc:
        api.submit("no-such-model", PROMPT)
    assert exc.value.code == "validation_error" and exc.value.detail
    assert "model" in exc.value.errors

    with pytest.raises(NotFound):
        api.generation(str(uuid.uuid4()))
    assert api.slept == []  # 4xx other than 429 are not retried

    make_ai_model("huge", credits="100000")
    with pytest.raises(InsufficientCredits) as exc:
        api.submit("huge", PROMPT)
    assert (exc.value.status, exc.value.code) == (402, "insufficient_credits")
    assert JobRow.objects.count() == 0


def test_organization_and_quotas_parse_into_typed_resources(api, org):
    me = api.organization()
    assert (me.slug, me.plan.slug) == ("acme", "studio")
    quotas = api.quotas()
    assert quotas.plan == "studio" and quotas.quotas
    assert all(q.name and q.unit for q in quotas.quotas)


def test_a_quote_holds_nothing_and_the_submission_holds_the_quoted_price(api, org, sdxl):
    from credits.services import account_for

    quote = api.quote("sdxl", PROMPT)
    assert (quote.model, quote.credits, quote.list_credits) == ("sdxl", Decimal(5), Decimal(5))
    assert account_for(organization=org).held == 0
    job = api.submit("sdxl", PROMPT)
    assert job.credits_held == quote.credits


def test_usage_events_are_charged_once_when_the_batch_is_sent_again(api, org):
    from datetime import timedelta

    from django.utils import timezone

    from credits.services import account_for
    from generations.metering.models import Meter
    from generations.metering.services import meter_rate_set

    meter = Meter.objects.create(slug="llm-tokens", name="LLM tokens", unit="token")
    meter_rate_set(
        meter=meter,
        credits_per_unit="0.002",
        reason="launch",
        actor=None,
        effective_from=timezone.now() - timedelta(days=1),
    )
    before = account_for(organization=org).balance
    now = timezone.now().isoformat()
    events = [{"id": "evt-1", "type": "llm-tokens", "time": now, "quantity": "1500"}]
    first = api.usage_events(events)
    again = api.usage_events(events)
    assert first["events"][0]["credits"] == again["events"][0]["credits"] == "3.000"
    assert again["events"][0]["replayed"] is True
    assert account_for(organization=org).balance == before - Decimal(3)
