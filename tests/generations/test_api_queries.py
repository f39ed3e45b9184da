"""Queries per request of the generations endpoints of API v1 (issue 16): the numbers are
pinned so a change that adds one (an N+1, a lookup per request) shows up here.

Counts are those of the test client inside the test's transaction, with the API key already
used once (its organization and plan come from the key cache, accounts/keycache.py, and its
last_used_at is written): a read is SAVEPOINT, the tenant scope's set_config, the view's
queries, the scope's restoring set_config, RELEASE (in production, outside a transaction: the
set_config, the view's queries and the COMMIT). The ledger's own prepared statements
(credits.ledger._core.execute, on a raw psycopg cursor) are not in Django's query log."""

from __future__ import annotations

import pytest

from accounts import services as account_services
from accounts.models import APIKey
from generations.models import Job, JobStatus
from tests.config.helpers import bearer
from tests.factories import make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]

GENERATIONS = "/api/v1/generations/"
# SAVEPOINT, set_config (tenant scope), set_config (scope restored), RELEASE.
SCOPE = 4


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def org():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def sdxl():
    return make_ai_model("sdxl", credits="5")


@pytest.fixture
def key(client, org, sdxl):
    """A raw key used once already (cached, last_used_at written)."""
    raw = account_services.api_key_create(organization=org, name="k", actor=None)[1]
    assert client.get("/api/v1/models/", **bearer(raw)).status_code == 200
    return raw


def submit(client, key, seed: int):
    body = {"model": "sdxl", "params": {"prompt": "a cat", "seed": seed}}
    return client.post(GENERATIONS, body, content_type="application/json", **bearer(key))


@pytest.fixture
def jobs(client, key):
    """Five queued jobs of the organization."""
    return [submit(client, key, seed).json()["id"] for seed in range(5)]


def test_the_model_list_is_one_query_whatever_the_number_of_models(
    client, key, sdxl, django_assert_num_queries
):
    with django_assert_num_queries(SCOPE + 1):  # the models with their price in force
        assert len(client.get("/api/v1/models/", **bearer(key)).json()) == 1
    for i in range(5):
        make_ai_model(f"extra-{i}", pool=sdxl.pool, credits="1")
    with django_assert_num_queries(SCOPE + 1):
        assert len(client.get("/api/v1/models/", **bearer(key)).json()) == 6


def test_the_generation_list_is_one_query_whatever_the_page_size(
    client, key, jobs, django_assert_num_queries
):
    with django_assert_num_queries(SCOPE + 1):  # one page of jobs with their model
        assert len(client.get(GENERATIONS, **bearer(key)).json()["results"]) == 5


def test_a_generation_detail_is_one_query(client, key, jobs, django_assert_num_queries):
    with django_assert_num_queries(SCOPE + 1):  # the job with its model
        assert client.get(f"{GENERATIONS}{jobs[0]}/", **bearer(key)).status_code == 200


def test_a_submission_takes_a_fixed_number_of_queries(client, key, django_assert_num_queries):
    """Update this list when the acceptance path changes (e.g. budget checks), one line per
    query, in order:
       1 SELECT creditrate: the model's price in force, with the (active) model and its pool,
         and the organization's contract price override in force (one statement,
         generations.services.submission_lookup; 2 queries before 2 December 2026)
       2 SAVEPOINT (generation_submit's transaction)
       3 SELECT creditaccount FOR UPDATE (spend_authorize joins the durable block: no savepoint)
       4 SELECT credithold by key (the hold's idempotency)
       5 SELECT COUNT(*) of held holds (the plan's concurrent-jobs cap)
       6 SELECT spend velocity: the hour's and trailing spend + the pause row (credits.velocity)
       7 WITH … INSERT job … INSERT jobevent (queued): one statement (job_insert_with_event)
       8 RELEASE SAVEPOINT (generation_submit)
    The ledger's hold (the account's conditional UPDATE, the hold and its entry) goes through
    the ledger's own cursor (credits.ledger._core), not counted here; it takes no savepoint
    (`hold_create(key_checked=True)`: 4 found no hold under 3's lock; 10 queries before
    3 December 2026).
    The key comes from the key cache and its last_used_at is not written again; the enqueue
    runs on commit (Redis, no query). 4 and 5 stay apart from 3: a subquery in the FOR UPDATE
    statement would read the snapshot taken before waiting for the lock, and miss the holds
    of the submission it waited for. 1, 3 and 4 are fixed SQL (config.rows), not the ORM's."""
    with django_assert_num_queries(8):
        assert submit(client, key, seed=1).status_code == 202
    with django_assert_num_queries(8):  # the same for the next one: nothing grows
        assert submit(client, key, seed=2).status_code == 202
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 2


def test_a_refusal_after_the_budget_reserved_leaves_no_reservation_behind(client, org, key):
    """spend_authorize joins the submission's transaction without a savepoint: a refusal
    after the budgets reserved (here: not enough credits) must still undo the reservation."""
    from credits.budgets import services as budgets
    from credits.budgets.models import Budget
    from credits.models import CreditHold

    make_ai_model("costly", credits="1000000")
    owner = org.memberships.get().user
    api_key = APIKey.objects.get()
    budgets.budget_create(
        organization=org, actor=owner, scope="key", api_key=api_key, period="day", amount="9999999"
    )
    body = {"model": "costly", "params": {"prompt": "a cat", "seed": 1}}
    response = client.post(GENERATIONS, body, content_type="application/json", **bearer(key))
    assert response.status_code == 402
    assert Budget.objects.get().reserved == 0
    assert not CreditHold.objects.exists() and not Job.objects.exists()


def test_a_cancel_takes_a_fixed_number_of_queries(client, key, jobs, django_assert_num_queries):
    """The job (404 for another organization's), then in one transaction: the job locked,
    its status written, the hold read and released through the ledger, the status log row,
    and the job's model for the response."""
    with django_assert_num_queries(13):
        response = client.post(f"{GENERATIONS}{jobs[0]}/cancel/", **bearer(key))
    assert response.json()["status"] == "cancelled"
    with django_assert_num_queries(13):
        assert client.post(f"{GENERATIONS}{jobs[1]}/cancel/", **bearer(key)).status_code == 200


def test_a_new_key_costs_one_lookup_and_one_last_used_write(
    client, org, sdxl, django_assert_num_queries
):
    raw = account_services.api_key_create(organization=org, name="new", actor=None)[1]
    with django_assert_num_queries(SCOPE + 1 + 2):  # + SELECT apikey, UPDATE last_used_at
        assert client.get("/api/v1/models/", **bearer(raw)).status_code == 200
    with django_assert_num_queries(SCOPE + 1):
        assert client.get("/api/v1/models/", **bearer(raw)).status_code == 200
