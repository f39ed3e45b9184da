"""The scenario planner's arithmetic (planning.scenarios.calculation), no database: the worked
example of docs/planning.md ("Scenario planner"), reproduced number by number, and the edge
cases (no break-even, a model with no measured cost, conversion capped at 100 %)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from planning.scenarios.calculation import ModelCost, evaluate
from planning.scenarios.inputs import parse_inputs

MODELS = ["image-fast", "video-hd"]
PLANS = ["starter", "creator", "studio"]
PRICES = {"starter": Decimal(9), "creator": Decimal(29), "studio": Decimal(99)}

# The worked example of docs/planning.md, "Scenario planner".
WORKED_EXAMPLE = {
    "mau": 10000,
    "generations_per_user": "40",
    "model_mix": {"image-fast": "80", "video-hd": "20"},
    "cache_hit_pct": "25",
    "conversion_pct": "5",
    "plan_mix": {"starter": "60", "creator": "30", "studio": "10"},
    "baseline": [
        {"name": "Database", "monthly_usd": "250"},
        {"name": "Storage", "monthly_usd": "120"},
        {"name": "CDN", "monthly_usd": "80"},
        {"name": "Monitoring", "monthly_usd": "50"},
    ],
    "costs_start": "2026-01-01",
    "costs_end": "2026-01-31",
}
WORKED_COSTS = {
    "image-fast": ModelCost(gpu_usd=Decimal("0.002")),
    "video-hd": ModelCost(gpu_usd=Decimal("0.05")),
}


def _inputs(data=None, **changes):
    data = dict(data or WORKED_EXAMPLE)
    data.update(changes)
    return parse_inputs(data, models=MODELS, plans=PLANS, today=date(2026, 2, 1))


def test_worked_example_of_the_docs_is_reproduced_exactly():
    out = evaluate(_inputs(), measured=WORKED_COSTS, plan_prices=PRICES)

    image, video = out["models"]
    assert (image["model"], image["generations"], image["cached_generations"]) == (
        "image-fast",
        "320000.000",
        "80000.000",
    )
    assert (image["gpu_generations"], image["gpu_cost_usd"]) == ("240000.000", "480.000000")
    assert (video["generations"], video["gpu_generations"], video["gpu_cost_usd"]) == (
        "80000.000",
        "60000.000",
        "3000.000000",
    )
    assert [(p["plan"], p["paid_users"], p["revenue_usd"]) for p in out["plans"]] == [
        ("starter", "300.000", "2700.000000"),
        ("creator", "150.000", "4350.000000"),
        ("studio", "50.000", "4950.000000"),
    ]
    assert out["totals"] == {
        "generations": "400000.000",
        "gpu_generations": "300000.000",
        "gpu_cost_usd": "3480.000000",
        "external_cost_usd": "0.000000",
        "baseline_usd": "500.000000",
        "total_cost_usd": "3980.000000",
        "paid_users": "500.000",
        "revenue_usd": "12000.000000",
        "gross_margin_usd": "8020.000000",
        "gross_margin_fraction": "0.668333",
        "revenue_per_paid_user_usd": "24.000000",
        "revenue_per_mau_usd": "1.200000",
        "variable_cost_per_mau_usd": "0.348000",
        "break_even_mau": 587,
        "break_even_paid_users": 30,
    }
    table = {
        (r["variable"], r["change"]): (
            r["gpu_cost_usd"],
            r["revenue_usd"],
            r["gross_margin_usd"],
            r["gross_margin_fraction"],
            r["break_even_mau"],
            r["break_even_paid_users"],
        )
        for r in out["sensitivity"]
    }
    assert table == {
        ("conversion", "-0.2"): ("3480.000000", "9600.000000", "5620.000000", "0.585417", 817, 33),
        ("conversion", "0.2"): ("3480.000000", "14400.000000", "10420.000000", "0.723611", 458, 28),
        ("generations_per_user", "-0.2"): (
            "2784.000000",
            "12000.000000",
            "8716.000000",
            "0.726333",
            543,
            28,
        ),
        ("generations_per_user", "0.2"): (
            "4176.000000",
            "12000.000000",
            "7324.000000",
            "0.610333",
            640,
            32,
        ),
        ("gpu_price", "-0.2"): ("2784.000000", "12000.000000", "8716.000000", "0.726333", 543, 28),
        ("gpu_price", "0.2"): ("4176.000000", "12000.000000", "7324.000000", "0.610333", 640, 32),
    }
    assert out["warnings"] == []


def test_the_gpu_price_moves_gpu_cost_only_not_external_cost():
    costs = {
        "image-fast": ModelCost(gpu_usd=Decimal("0.002"), external_usd=Decimal("0.001")),
        "video-hd": ModelCost(gpu_usd=Decimal("0.05")),
    }
    out = evaluate(_inputs(), measured=costs, plan_prices=PRICES)
    # 240,000 uncached image generations × $0.001 external.
    assert out["totals"]["external_cost_usd"] == "240.000000"
    assert out["totals"]["total_cost_usd"] == "4220.000000"
    gpu_up = next(
        r for r in out["sensitivity"] if r["variable"] == "gpu_price" and r["change"] == "0.2"
    )
    assert gpu_up["gpu_cost_usd"] == "4176.000000"
    assert gpu_up["total_cost_usd"] == "4916.000000"  # 4176 + 240 + 500


def test_a_model_without_measured_cost_is_counted_at_zero_with_a_warning():
    out = evaluate(
        _inputs(), measured={"image-fast": WORKED_COSTS["image-fast"]}, plan_prices=PRICES
    )
    video = out["models"][1]
    assert video["cost_source"] == "missing"
    assert video["cost_per_generation_usd"] is None
    assert video["gpu_cost_usd"] == "0.000000"
    assert [w["code"] for w in out["warnings"]] == ["no_measured_cost"]
    assert out["warnings"][0]["model"] == "video-hd"
    assert "override" in out["warnings"][0]["message"]


def test_an_override_replaces_the_measured_cost():
    inputs = _inputs(cost_overrides={"video-hd": "0.1"})
    out = evaluate(inputs, measured=WORKED_COSTS, plan_prices=PRICES)
    video = out["models"][1]
    assert (video["cost_source"], video["cost_per_generation_usd"]) == ("override", "0.100000")
    assert video["gpu_cost_usd"] == "6000.000000"


def test_no_break_even_when_each_user_costs_more_than_they_bring():
    out = evaluate(_inputs(conversion_pct="0.5"), measured=WORKED_COSTS, plan_prices=PRICES)
    # Revenue per MAU 0.005 × 24 = $0.12 < $0.348 of GPU per MAU.
    assert out["totals"]["break_even_mau"] is None
    assert out["totals"]["break_even_paid_users"] is None
    assert Decimal(out["totals"]["gross_margin_usd"]) < 0


def test_zero_baseline_breaks_even_at_zero_users():
    out = evaluate(_inputs(baseline=[]), measured=WORKED_COSTS, plan_prices=PRICES)
    assert (out["totals"]["break_even_mau"], out["totals"]["break_even_paid_users"]) == (0, 0)


def test_zero_mau_has_no_revenue_and_no_margin_fraction():
    out = evaluate(_inputs(mau=0), measured=WORKED_COSTS, plan_prices=PRICES)
    assert out["totals"]["revenue_usd"] == "0.000000"
    assert out["totals"]["gross_margin_fraction"] is None
    assert out["totals"]["total_cost_usd"] == "500.000000"
    assert out["totals"]["break_even_paid_users"] == 30  # per-MAU economics still hold


def test_conversion_plus_20_percent_is_capped_at_100_percent():
    out = evaluate(_inputs(conversion_pct="90"), measured=WORKED_COSTS, plan_prices=PRICES)
    up = next(
        r for r in out["sensitivity"] if r["variable"] == "conversion" and r["change"] == "0.2"
    )
    assert up["revenue_usd"] == "240000.000000"  # 10,000 paid users × $24


@pytest.mark.parametrize("mau", [1, 999_999_999, 1_000_000_000])
def test_largest_inputs_stay_exact(mau):
    inputs = _inputs(mau=mau, generations_per_user="100000", cost_overrides={"video-hd": "1000"})
    out = evaluate(inputs, measured=WORKED_COSTS, plan_prices=PRICES)
    video_gens = Decimal(mau) * 100000 * Decimal("0.2") * Decimal("0.75")
    assert Decimal(out["models"][1]["gpu_cost_usd"]) == video_gens * 1000
