"""Queries per request of the credits endpoints of API v1 (issue 16), pinned: a read is
SAVEPOINT, the tenant scope's set_config, the view's queries, the scope's restoring
set_config, RELEASE (the test's transaction; in production the set_config, the view's queries
and the COMMIT). The API key is used once first: it then comes from the key cache."""

from __future__ import annotations

import pytest

from accounts import services as account_services
from credits import ledger
from tests.config.helpers import bearer
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db

SCOPE = 4  # SAVEPOINT, set_config (tenant scope), set_config (scope restored), RELEASE


@pytest.fixture
def org():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def key(client, org):
    raw = account_services.api_key_create(organization=org, name="k", actor=None)[1]
    assert client.get("/api/v1/balance/", **bearer(raw)).status_code == 200
    return raw


@pytest.fixture
def history(org):
    """A few holds, captured and open, so the reads have rows to count."""
    account = account_of(org)
    for i in range(3):
        ledger.hold_capture(hold=ledger.hold_create(account=account, amount="1", key=f"done-{i}"))
    ledger.hold_create(account=account, amount="1", key="open")


@pytest.mark.parametrize(
    ("path", "view_queries"),
    [
        ("/api/v1/balance/", 2),  # the account; its live grants
        ("/api/v1/ledger/", 1),  # one page of entries
        # the account; holds today; open holds; the budgets that apply (credits/budgets)
        ("/api/v1/quotas/", 4),
        ("/api/v1/usage/", 1),  # holds aggregated per day
    ],
)
def test_each_credits_read_takes_a_fixed_number_of_queries(
    client, key, history, path, view_queries, django_assert_num_queries
):
    with django_assert_num_queries(SCOPE + view_queries):
        assert client.get(path, **bearer(key)).status_code == 200
