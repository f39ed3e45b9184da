"""Per-key rate limit of the API from the plan (accounts/api/throttling.py), counted in Redis."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from accounts import services
from accounts.models import Plan
from config.api import throttling
from tests.config.helpers import assert_problem, bearer
from tests.factories import make_org

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization/"
NOW = 1_800_000_030.25  # 30.25 s into a window: 29.75 s left → Retry-After 30


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: NOW))


@pytest.fixture
def limited_plan():
    Plan.objects.filter(slug="starter").update(api_rate_limit_per_min=3)


def new_key(org, name="k"):
    return services.api_key_create(organization=org, name=name, actor=None)[1]


def test_request_over_the_plan_limit_gets_429_with_retry_after(client, frozen_clock, limited_plan):
    key = new_key(make_org(slug="acme", plan="starter"))
    for _ in range(3):
        assert client.get(ORG_URL, **bearer(key)).status_code == 200
    response = client.get(ORG_URL, **bearer(key))
    body = assert_problem(response, status=429, code="rate_limited")
    assert response["Retry-After"] == "30"
    assert (body["limit"], body["limit_value"]) == ("rate_limit", 3)


def test_rate_limit_is_per_key(client, frozen_clock, limited_plan):
    acme = make_org(slug="acme", plan="starter")
    busy, other_same_org = new_key(acme, "busy"), new_key(acme, "other")
    other_org = new_key(make_org(slug="globex", plan="starter"))
    for _ in range(4):
        client.get(ORG_URL, **bearer(busy))
    assert client.get(ORG_URL, **bearer(busy)).status_code == 429
    for _ in range(3):
        assert client.get(ORG_URL, **bearer(other_org)).status_code == 200
        assert client.get(ORG_URL, **bearer(other_same_org)).status_code == 200


def test_limit_resets_in_the_next_window(client, monkeypatch, limited_plan):
    key = new_key(make_org(slug="acme", plan="starter"))
    clock = SimpleNamespace(time=lambda: NOW)
    monkeypatch.setattr(throttling, "time", clock)
    for _ in range(3):
        client.get(ORG_URL, **bearer(key))
    assert client.get(ORG_URL, **bearer(key)).status_code == 429
    clock.time = lambda: NOW + 60
    assert client.get(ORG_URL, **bearer(key)).status_code == 200


def test_plan_limit_comes_from_the_plan_row(client, frozen_clock):
    Plan.objects.filter(slug="studio").update(api_rate_limit_per_min=1)
    key = new_key(make_org(slug="acme", plan="studio"))
    assert client.get(ORG_URL, **bearer(key)).status_code == 200
    assert client.get(ORG_URL, **bearer(key)).status_code == 429
