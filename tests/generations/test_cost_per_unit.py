"""Per-unit unit costs (issue 15): for a model priced per unit (a price table), the unit-cost
report and the suggested prices give the cost per unit — reproduced by hand on the spec's
worked example."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from django.core.management import call_command

from config.errors import ValidationError
from generations import pricing, services
from generations.models import AIModel, Job, JobStatus, PricingPolicy
from infra_costs.allocation import unit_cost_report
from tests.factories import make_org
from tests.infra_costs.conftest import DATA

pytestmark = pytest.mark.django_db

START, END = date(2026, 1, 5), date(2026, 1, 8)


@pytest.fixture
def example():
    """The spec's worked example (model-b: 2 generations, fully loaded 68.636842 USD), with
    model-b priced per second of video and its two jobs of the period: one asked 10 s and the
    GPU reported 5 s (actual units), one asked 25 s."""
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())
    model_b = AIModel.objects.get(slug="model-b")
    model_b.params_schema = {
        "type": "object",
        "properties": {"prompt": {"type": "string"}, "duration_s": {"type": "number"}},
    }
    model_b.save()
    rate = services.rate_set(
        model=model_b,
        price_table={"per": [{"param": "duration_s", "credits": "1", "unit": "second"}]},
        reason="per second",
        actor=None,
    )
    org = make_org(slug="acme")
    jobs = [
        ({"prompt": "a", "duration_s": 10}, {"duration_s": 5}, "2026-01-05T02:20:00"),
        ({"prompt": "b", "duration_s": 25}, None, "2026-01-06T00:10:00"),
        # Outside the period, failed, or served from the cache: not counted.
        ({"prompt": "c", "duration_s": 99}, None, "2026-01-08T00:00:00"),
    ]
    for params, actual, finished in jobs:
        at = datetime.fromisoformat(finished).replace(tzinfo=UTC)
        Job.objects.create(
            organization=org,
            model=model_b,
            rate=rate,
            params=params,
            params_hash=params["prompt"],
            status=JobStatus.SUCCEEDED,
            actual_units=actual,
            credits_held=D(params["duration_s"]),
            credits_charged=D((actual or params)["duration_s"]),
            created_at=at,
            finished_at=at,
        )
    for status, cached in ((JobStatus.FAILED, False), (JobStatus.SUCCEEDED, True)):
        at = datetime(2026, 1, 6, tzinfo=UTC)
        Job.objects.create(
            organization=org,
            model=model_b,
            rate=rate,
            params={"prompt": "d", "duration_s": 50},
            params_hash="d",
            status=status,
            cached=cached,
            created_at=at,
            finished_at=at,
        )
    return model_b


def test_the_report_gives_the_cost_per_second_of_a_model_priced_per_second(example):
    report = unit_cost_report(START, END)
    b = next(m for m in report["models"] if m["model"] == "model-b")
    a = next(m for m in report["models"] if m["model"] == "model-a")
    # Units: 5 s (reported by the GPU, not the 10 asked) + 25 s = 30 s.
    # Fully loaded 56.70 + 14.40 × 56.70 / 68.40 = 68.636842105… USD → 2.287894736… per second.
    assert b["fully_loaded_cost_usd"] == "68.636842"
    assert (b["unit"], b["units"], b["cost_per_unit_usd"]) == ("second", "30.000000", "2.287895")
    assert b["cost_per_generation_usd"] == "34.318421"  # unchanged
    assert "unit" not in a  # a flat price: no per-unit figures


def test_the_suggested_price_per_unit_and_no_flat_apply(example):
    policy = PricingPolicy.load()
    policy.credit_value_usd, policy.target_margin = D("0.01"), D("0.4")
    policy.save()
    suggestions = pricing.prices_suggest(START, END)
    row = suggestions.row("model-b")
    # 2.287895 USD per second / (1 − 0.4) / 0.01 USD per credit = 381.3158333… → 381.315834
    assert row.cost_per_unit_usd == D("2.287895")
    assert row.suggested_credits_per_unit == D("381.315834")
    data = row.as_dict()
    assert (data["unit"], data["suggested_credits_per_unit"]) == ("second", "381.315834")
    assert not row.applicable  # its price is a table: a flat price is never applied over it
    with pytest.raises(ValidationError):
        pricing.price_apply(model=example, actor=None, suggestions=suggestions)
    assert "unit" not in suggestions.row("model-a").as_dict()
