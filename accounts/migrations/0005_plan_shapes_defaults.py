"""Plan shapes (docs/planning.md, "Plan shapes"): the free tier is watermarked, and two more
default plans — a fair-use `unlimited` plan and pay-as-you-go (`payg`). Neither is public (staff
put organizations on them, or make them public in the admin). Re-running never overwrites an
edited plan: the free plan is only marked when it is still unmarked at this migration, and the
new plans are created only when missing."""

from decimal import Decimal

from django.db import migrations

# Changes to the plans of 0002 (applied when those are created: accounts.services.
# plans_ensure_defaults).
PLAN_DEFAULTS = {"free": {"watermark": True}}

PLANS = [
    {
        "slug": "payg",
        "name": "Pay as you go",
        "monthly_price_usd": Decimal("0"),
        "monthly_credits": Decimal("0"),
        "overage_enabled": False,
        "overage_cap": Decimal("0"),
        "overage_price_usd": None,
        "daily_generation_cap": None,
        "max_concurrent_jobs": 2,
        "api_rate_limit_per_min": 300,
        "queue_priority": "normal",
        "api_access": True,
        "unlimited": False,
        "fair_use_cap": None,
        "fair_use_throttle": "priority",
        "fair_use_hourly_rate": None,
        "watermark": False,
        "is_public": False,
        "sort_order": 15,
    },
    {
        "slug": "unlimited",
        "name": "Unlimited",
        "monthly_price_usd": Decimal("49"),
        "monthly_credits": Decimal("0"),
        "overage_enabled": False,
        "overage_cap": Decimal("0"),
        "overage_price_usd": None,
        "daily_generation_cap": None,
        "max_concurrent_jobs": 2,
        "api_rate_limit_per_min": 300,
        "queue_priority": "normal",
        "api_access": True,
        "unlimited": True,
        "fair_use_cap": 1000,
        "fair_use_throttle": "priority",
        "fair_use_hourly_rate": None,
        "watermark": False,
        "is_public": False,
        "sort_order": 45,
    },
]


def apply_defaults(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    for slug, fields in PLAN_DEFAULTS.items():
        Plan.objects.filter(slug=slug).update(**fields)
    for fields in PLANS:
        Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_plan_shapes")]

    operations = [migrations.RunPython(apply_defaults, migrations.RunPython.noop)]
