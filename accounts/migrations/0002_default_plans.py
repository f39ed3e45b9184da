"""The spec's default plans (§2, Plans). Editable in the admin afterwards; re-running the
migration never overwrites an edited plan."""

from decimal import Decimal

from django.db import migrations

PLANS = [
    {
        "slug": "free", "name": "Free", "monthly_price_usd": Decimal("0"),
        "monthly_credits": Decimal("50"), "overage_enabled": False, "overage_cap": Decimal("0"),
        "overage_price_usd": None, "daily_generation_cap": 20, "max_concurrent_jobs": 1,
        "api_rate_limit_per_min": None, "queue_priority": "low", "api_access": False,
        "is_public": True, "sort_order": 10,
    },
    {
        "slug": "starter", "name": "Starter", "monthly_price_usd": Decimal("9"),
        "monthly_credits": Decimal("500"), "overage_enabled": True, "overage_cap": Decimal("500"),
        "overage_price_usd": Decimal("0.025"), "daily_generation_cap": None,
        "max_concurrent_jobs": 2, "api_rate_limit_per_min": 300, "queue_priority": "normal",
        "api_access": True, "is_public": True, "sort_order": 20,
    },
    {
        "slug": "creator", "name": "Creator", "monthly_price_usd": Decimal("29"),
        "monthly_credits": Decimal("2000"), "overage_enabled": True,
        "overage_cap": Decimal("2000"), "overage_price_usd": Decimal("0.018"),
        "daily_generation_cap": None, "max_concurrent_jobs": 4, "api_rate_limit_per_min": 600,
        "queue_priority": "high", "api_access": True, "is_public": True, "sort_order": 30,
    },
    {
        "slug": "studio", "name": "Studio", "monthly_price_usd": Decimal("99"),
        "monthly_credits": Decimal("10000"), "overage_enabled": True,
        "overage_cap": Decimal("10000"), "overage_price_usd": Decimal("0.012"),
        "daily_generation_cap": None, "max_concurrent_jobs": 8, "api_rate_limit_per_min": 1200,
        "queue_priority": "highest", "api_access": True, "is_public": True, "sort_order": 40,
    },
    {
        "slug": "enterprise", "name": "Enterprise", "monthly_price_usd": None,
        "monthly_credits": Decimal("0"), "overage_enabled": False, "overage_cap": Decimal("0"),
        "overage_price_usd": None, "daily_generation_cap": None, "max_concurrent_jobs": None,
        "api_rate_limit_per_min": 6000, "queue_priority": "dedicated", "api_access": True,
        "is_public": False, "sort_order": 50,
    },
]


def create_plans(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    for fields in PLANS:
        Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_plans, migrations.RunPython.noop)]
