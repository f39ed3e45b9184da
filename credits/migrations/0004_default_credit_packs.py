"""The spec's default credit packs (§2, Plans): one-off purchases whose credits never expire.
Editable in the admin afterwards; re-running never overwrites an edited pack."""

from decimal import Decimal

from django.db import migrations

PACKS = [
    {"slug": "credits-500", "name": "500 credits", "credits": Decimal("500"),
     "price_usd": Decimal("10.00"), "sort_order": 10},
    {"slug": "credits-2500", "name": "2,500 credits", "credits": Decimal("2500"),
     "price_usd": Decimal("40.00"), "sort_order": 20},
    {"slug": "credits-12000", "name": "12,000 credits", "credits": Decimal("12000"),
     "price_usd": Decimal("150.00"), "sort_order": 30},
]


def create_packs(apps, schema_editor):
    CreditPack = apps.get_model("credits", "CreditPack")
    for fields in PACKS:
        CreditPack.objects.get_or_create(slug=fields["slug"], defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("credits", "0003_billing")]

    operations = [migrations.RunPython(create_packs, migrations.RunPython.noop)]
