"""Credit price derivation (spec §3): the formula, hand-computed from the spec's worked example;
`suggest_prices [--apply]` (new versions with a reason and no user, idempotent); the below-cost
flag; the singleton pricing policy and its admin."""

from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import AuditEvent, User
from config.errors import ValidationError
from generations import pricing, selectors, services
from generations.models import AIModel, CreditRate, PricingPolicy
from tests.infra_costs.conftest import DATA

pytestmark = pytest.mark.django_db

START, END = date(2026, 1, 5), date(2026, 1, 8)
PERIOD = ["--start", "2026-01-05", "--end", "2026-01-08"]


def policy(**fields) -> PricingPolicy:
    p = PricingPolicy.load()
    for name, value in fields.items():
        setattr(p, name, D(value))
    p.save()
    return p


@pytest.fixture
def example():
    """The spec's worked example imported through the commands: model-a costs 14.163158 USD
    per generation fully loaded (0.60 active), model-b 34.318421 (1.50 active)."""
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())
    return {m.slug: m for m in AIModel.objects.filter(slug__in=["model-a", "model-b"])}


def suggest(*args: str) -> dict:
    out = io.StringIO()
    call_command("suggest_prices", *PERIOD, "--format", "json", *args, stdout=out)
    return json.loads(out.getvalue())


def row(data: dict, slug: str) -> dict:
    return next(m for m in data["models"] if m["model"] == slug)


# --- The formula ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        ("2360.526316", "1", "2361"),
        ("2361", "1", "2361"),  # already a multiple: unchanged
        ("2360.000001", "1", "2361"),  # any excess rounds up
        ("2360.526316", "5", "2365"),
        ("2360.526316", "25", "2375"),
        ("2360.526316", "0.5", "2361"),  # the next half credit above 2360.53 is 2361.0
        ("2360.4", "0.5", "2360.5"),
        ("12.3401", "0.25", "12.5"),
        ("0.0001", "0.001", "0.001"),
        ("0", "1", "0"),
    ],
)
def test_ceil_to_step(value, step, expected):
    assert pricing.ceil_to_step(D(value), D(step)) == D(expected)


def test_formula_on_the_worked_example_numbers():
    p = PricingPolicy(credit_value_usd=D("0.01"), target_margin=D("0.4"), min_credits=1, step=1)
    # model-a: 14.163158 / 0.6 / 0.01 = 2360.52633… → 2361
    assert pricing.suggested_credits(D("14.163158"), p) == D("2361")
    # model-b: 34.318421 / 0.6 / 0.01 = 5719.73683… → 5720
    assert pricing.suggested_credits(D("34.318421"), p) == D("5720")
    # Exact: 0.006 / 0.6 / 0.01 = 1 exactly — no binary-float 1.0000000001 → 2.
    p.min_credits = D("0.5")
    assert pricing.suggested_credits(D("0.006"), p) == D(1)
    # Step 5: 2360.53 → 2365; margin 0 → 1416.3158 → 1417.
    p.step = D(5)
    assert pricing.suggested_credits(D("14.163158"), p) == D("2365")
    p.step, p.target_margin = D(1), D(0)
    assert pricing.suggested_credits(D("14.163158"), p) == D("1417")
    # min_credits wins for cheap models: 0.001 / 0.6 / 0.01 = 0.1667 → 1, but min 3.
    p.target_margin, p.min_credits = D("0.4"), D(3)
    assert pricing.suggested_credits(D("0.001"), p) == D(3)
    # credit value 0.025: 14.163158 / 0.6 / 0.025 = 944.21053… → 945
    p.credit_value_usd, p.min_credits = D("0.025"), D(1)
    assert pricing.suggested_credits(D("14.163158"), p) == D("945")
    assert pricing.suggested_credits(None, p) is None


def test_margin_at():
    # 2361 credits × 0.01 = 23.61 USD revenue; cost 14.163158 → 9.446842 / 23.61 = 0.4001204…
    assert pricing.margin_at(D(2361), D("14.163158"), D("0.01")) == D("0.400120")
    assert pricing.margin_at(D(10), D("14.163158"), D("0.01")) == D("-140.631580")
    assert pricing.margin_at(None, D(1), D("0.01")) is None
    assert pricing.margin_at(D(1), None, D("0.01")) is None


# --- Suggestions from a known report --------------------------------------------------------------


def test_suggestions_for_the_worked_example(example):
    services.rate_set(model=example["model-a"], credits="10", reason="launch", actor=None)
    services.rate_set(model=example["model-b"], credits="6000", reason="launch", actor=None)
    s = pricing.prices_suggest(START, END)
    a, b = s.row("model-a"), s.row("model-b")

    assert a.cost_per_generation_usd == D("14.163158")
    assert a.active_cost_per_generation_usd == D("0.600000")
    assert a.suggested_credits == D("2361")
    assert a.current_credits == D("10.000")
    assert a.current_price_usd == D("0.100000")
    assert a.margin_at_current_price == D("-140.631580")  # (0.10 − 14.163158) / 0.10
    assert a.below_cost and a.below_active_cost  # 0.10 USD < 0.60 of GPU time alone
    assert a.differs and a.applicable

    assert b.cost_per_generation_usd == D("34.318421")
    assert b.suggested_credits == D("5720")  # ceil(5719.7368…)
    assert b.current_price_usd == D("60.000000")
    assert b.margin_at_current_price == D("0.428026")  # (60 − 34.318421) / 60
    assert not b.below_cost and not b.below_target_margin
    assert b.margin_at_suggested_price == D("0.400028")


def test_below_active_cost_flag(example):
    services.rate_set(model=example["model-a"], credits="50", reason="launch", actor=None)
    a = pricing.prices_suggest(START, END).row("model-a")
    assert a.below_cost  # 0.50 USD < 14.163158
    assert a.below_active_cost  # 0.50 USD < 0.60 of GPU time alone
    services.rate_set(model=example["model-a"], credits="1500", reason="up", actor=None)
    a = pricing.prices_suggest(START, END).row("model-a")
    assert not a.below_cost  # 15.00 > 14.163158
    assert a.below_target_margin  # but 5.6 % < 40 %


def test_policy_changes_the_suggestion(example):
    policy(credit_value_usd="0.02", target_margin="0.5", step="10", min_credits="1")
    a = pricing.prices_suggest(START, END).row("model-a")
    # 14.163158 / 0.5 / 0.02 = 1416.3158 → next multiple of 10: 1420
    assert a.suggested_credits == D("1420")


def test_models_without_generations_have_no_suggestion(example):
    from tests.factories import make_ai_model

    make_ai_model("idle-model", credits="4")
    s = pricing.prices_suggest(START, END)
    r = s.row("idle-model")
    assert r.generations == 0 and r.cost_per_generation_usd is None
    assert r.suggested_credits is None and not r.differs and not r.below_cost
    with pytest.raises(ValidationError):
        pricing.price_apply(model=r.ai_model, actor=None, suggestions=s)


# --- The command ----------------------------------------------------------------------------------


def test_command_json(example):
    services.rate_set(model=example["model-a"], credits="10", reason="launch", actor=None)
    data = suggest()
    assert data["period"]["start"] == "2026-01-05" and data["period"]["end"] == "2026-01-08"
    assert data["policy"] == {
        "credit_value_usd": "0.010000",
        "target_margin": "0.400000",
        "min_credits": "1.000",
        "step": "1.000",
    }
    a = row(data, "model-a")
    assert a["cost_per_generation_usd"] == "14.163158"
    assert a["active_cost_per_generation_usd"] == "0.600000"
    assert a["current_credits"] == "10.000"
    assert a["suggested_credits"] == "2361.000"
    assert a["below_cost"] is True and a["differs"] is True
    b = row(data, "model-b")
    assert b["current_credits"] is None  # imported, no price yet
    assert b["suggested_credits"] == "5720.000"
    assert b["below_cost"] is False
    assert "applied" not in data
    assert CreditRate.objects.filter(model__slug__in=["model-a", "model-b"]).count() == 1


def test_command_table_flags_below_cost(example):
    services.rate_set(model=example["model-a"], credits="10", reason="launch", actor=None)
    out = io.StringIO()
    call_command("suggest_prices", *PERIOD, stdout=out)
    text = out.getvalue()
    assert "Suggested prices from unit costs 2026-01-05 → 2026-01-08" in text
    line_a = next(line for line in text.splitlines() if line.startswith("model-a"))
    for cell in ("0.600000", "14.163158", "10.000", "2361.000", "BELOW COST (even active)"):
        assert cell in line_a
    assert "1 model(s) priced below their fully loaded cost: model-a" in text
    assert "run with --apply" in text


def test_apply_creates_versions_with_reason_and_is_idempotent(example):
    services.rate_set(model=example["model-a"], credits="10", reason="launch", actor=None)
    first = suggest("--apply")
    assert {a["model"]: a["credits"] for a in first["applied"]} == {
        "model-a": "2361.000",
        "model-b": "5720.000",
    }
    a_rate = selectors.rate_current(model=example["model-a"])
    assert a_rate.credits == D("2361")
    assert a_rate.set_by is None
    assert a_rate.reason.startswith("suggest_prices: 2361 credits from 14.163158 USD/generation")
    assert "2026-01-05 → 2026-01-08" in a_rate.reason and "was 10" in a_rate.reason
    assert selectors.rate_current(model=example["model-b"]).credits == D("5720")
    events = AuditEvent.objects.filter(action="credit_rate.set", data__model="model-a")
    assert events.latest("id").data["to"] == "2361.000"
    versions = CreditRate.objects.count()

    second = suggest("--apply")
    assert second["applied"] == []
    assert CreditRate.objects.count() == versions
    assert not any(m["differs"] for m in second["models"])

    out = io.StringIO()
    call_command("suggest_prices", *PERIOD, "--apply", stdout=out)
    assert "Nothing to apply" in out.getvalue()
    assert CreditRate.objects.count() == versions


def test_apply_follows_a_new_policy(example):
    suggest("--apply")
    policy(step="100")
    data = suggest("--apply")
    assert {a["model"]: a["credits"] for a in data["applied"]} == {
        "model-a": "2400.000",
        "model-b": "5800.000",
    }


def test_default_period_is_last_30_days(example, monkeypatch):
    monkeypatch.setattr(pricing, "default_period", lambda today=None: (START, END))
    out = io.StringIO()
    call_command("suggest_prices", "--format", "json", stdout=out)
    assert row(json.loads(out.getvalue()), "model-a")["suggested_credits"] == "2361.000"


def test_default_period_dates():
    assert pricing.default_period(date(2026, 2, 1)) == (date(2026, 1, 2), date(2026, 2, 1))


def test_command_rejects_bad_input(example):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Not a date"):
        call_command("suggest_prices", "--start", "yesterday", stdout=io.StringIO())
    with pytest.raises(CommandError, match="after start"):
        call_command(
            "suggest_prices", "--start", "2026-01-08", "--end", "2026-01-05", stdout=io.StringIO()
        )


# --- price_apply ----------------------------------------------------------------------------------


def test_price_apply_with_actor_and_stale_expectation(example):
    staff = User.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)
    s = pricing.prices_suggest(START, END)
    with pytest.raises(ValidationError, match="now 2361 credits, not 2000"):
        pricing.price_apply(model=example["model-a"], actor=staff, suggestions=s, expected=D(2000))
    rate = pricing.price_apply(
        model=example["model-a"], actor=staff, reason="quarterly review", suggestions=s
    )
    assert rate.credits == D(2361) and rate.set_by == staff and rate.reason == "quarterly review"
    again = pricing.price_apply(model=example["model-a"], actor=staff, start=START, end=END)
    assert again is None


# --- The policy -----------------------------------------------------------------------------------


def test_policy_is_a_singleton_with_defaults():
    p = PricingPolicy.load()
    assert p.pk == 1
    assert (p.credit_value_usd, p.target_margin, p.min_credits, p.step) == (
        D("0.01"),
        D("0.40"),
        D(1),
        D(1),
    )
    assert PricingPolicy.load().pk == 1 and PricingPolicy.objects.count() == 1
    PricingPolicy(target_margin=D("0.3")).save()  # saving another "row" updates the one
    assert PricingPolicy.objects.count() == 1
    assert PricingPolicy.load().target_margin == D("0.3")


@pytest.mark.parametrize(
    "fields",
    [
        {"target_margin": D(1)},
        {"target_margin": D("-0.1")},
        {"credit_value_usd": D(0)},
        {"step": D(0)},
        {"min_credits": D(0)},
    ],
)
def test_policy_constraints(fields):
    p = PricingPolicy.load()
    for name, value in fields.items():
        setattr(p, name, value)
    with pytest.raises(IntegrityError), transaction.atomic():
        p.save()


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser(email="root@example.com", password="pw-root-123")
    client.force_login(user)
    return client, user


def test_policy_admin_singleton(admin_client):
    client, user = admin_client
    add = reverse("admin:generations_pricingpolicy_add")
    changelist = reverse("admin:generations_pricingpolicy_changelist")
    # No row yet: the changelist sends to the (only) policy, created with the defaults.
    response = client.get(changelist)
    assert response.status_code == 302
    assert response.url == reverse("admin:generations_pricingpolicy_change", args=[1])
    assert client.get(add).status_code == 403  # one exists now: no second one
    change = reverse("admin:generations_pricingpolicy_change", args=[1])
    page = client.get(change)
    assert page.status_code == 200
    assert b"deletelink" not in page.content
    response = client.post(
        change,
        {"credit_value_usd": "0.02", "target_margin": "0.35", "min_credits": "2", "step": "5"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    p = PricingPolicy.load()
    assert (p.credit_value_usd, p.target_margin, p.min_credits, p.step) == (
        D("0.02"),
        D("0.35"),
        D(2),
        D(5),
    )
    assert p.updated_by == user
    event = AuditEvent.objects.get(action="pricing_policy.changed")
    assert event.data["target_margin"] == {"from": "0.400000", "to": "0.350000"}
    # Out of range is refused by the form.
    response = client.post(
        change,
        {"credit_value_usd": "0.02", "target_margin": "1", "min_credits": "2", "step": "5"},
    )
    assert response.status_code == 200 and b"errornote" in response.content
    # Never deleted.
    assert client.post(reverse("admin:generations_pricingpolicy_delete", args=[1])).status_code in (
        403,
        302,
    )
    assert PricingPolicy.objects.count() == 1
