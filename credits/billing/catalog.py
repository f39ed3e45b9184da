"""What is for sale: plans (accounts.Plan) and credit packs, and their Stripe counterparts.

`stripe_sync` makes Stripe match the database, idempotently: one product per plan and per pack
(our own product ids, ``gpuc-plan-<slug>`` / ``gpuc-pack-<slug>``) and one active price each,
found by its lookup key (``gpuc-plan-<slug>-monthly`` / ``gpuc-pack-<slug>``). A changed amount
gets a new price that takes the lookup key over (the old one is archived: existing subscribers
keep it until changed). The price ids are stored on Plan.stripe_price_id and
CreditPack.stripe_price_id.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction

from accounts.models import Plan
from credits.billing import gateway as gw
from credits.billing.models import CreditPack


def usd_to_cents(usd: Decimal) -> int:
    return int((Decimal(usd) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@transaction.atomic
def packs_ensure_defaults() -> list[CreditPack]:
    """Create whichever default pack (the data migration's) is missing; never overwrite one."""
    migration = importlib.import_module("credits.migrations.0004_default_credit_packs")
    created = []
    for fields in migration.PACKS:
        pack, was_created = CreditPack.objects.get_or_create(slug=fields["slug"], defaults=fields)
        if was_created:
            created.append(pack)
    return created


def packs_active():
    return CreditPack.objects.filter(active=True)


def plans_purchasable():
    """Public plans with a monthly price (the ones Checkout sells)."""
    return Plan.objects.filter(is_public=True, monthly_price_usd__gt=0)


def plan_for_price(price_id: str | None) -> Plan | None:
    if not price_id:
        return None
    return Plan.objects.filter(stripe_price_id=price_id).first()


@dataclass(frozen=True)
class SyncLine:
    kind: str  # plan | pack
    slug: str
    product_id: str
    price_id: str
    changed: bool

    def __str__(self) -> str:
        state = "updated" if self.changed else "unchanged"
        return (
            f"{self.kind} {self.slug}: product {self.product_id}, price {self.price_id} ({state})"
        )


def stripe_sync() -> list[SyncLine]:
    """Create or update Stripe products and prices for every paid plan and active pack and store
    their price ids. Safe to run any number of times."""
    gateway = gw.get_gateway()
    currency = settings.STRIPE_CURRENCY
    site = settings.SITE_NAME
    lines: list[SyncLine] = []
    for plan in Plan.objects.filter(monthly_price_usd__gt=0).order_by("sort_order", "slug"):
        product_id = f"gpuc-plan-{plan.slug}"
        gateway.product_ensure(
            product_id=product_id,
            name=f"{site} {plan.name} plan",
            metadata={"kind": "plan", "plan": plan.slug},
        )
        price = gateway.price_ensure(
            product_id=product_id,
            lookup_key=f"gpuc-plan-{plan.slug}-monthly",
            unit_amount=usd_to_cents(plan.monthly_price_usd),
            currency=currency,
            recurring_interval="month",
            metadata={"kind": "plan", "plan": plan.slug},
        )
        price_id = price["id"] if price else ""
        changed = price_id != plan.stripe_price_id
        if changed:
            Plan.objects.filter(pk=plan.pk).update(stripe_price_id=price_id)
        lines.append(SyncLine("plan", plan.slug, product_id, price_id, changed))
    for pack in CreditPack.objects.filter(active=True):
        product_id = f"gpuc-pack-{pack.slug}"
        gateway.product_ensure(
            product_id=product_id,
            name=f"{site} {pack.name}",
            metadata={"kind": "credit_pack", "pack": pack.slug},
        )
        price = gateway.price_ensure(
            product_id=product_id,
            lookup_key=f"gpuc-pack-{pack.slug}",
            unit_amount=usd_to_cents(pack.price_usd),
            currency=currency,
            recurring_interval=None,
            metadata={"kind": "credit_pack", "pack": pack.slug},
        )
        # No one-time prices on legacy-plan servers: Checkout then uses inline price data.
        price_id = price["id"] if price else ""
        changed = price_id != pack.stripe_price_id
        if changed:
            CreditPack.objects.filter(pk=pack.pk).update(stripe_price_id=price_id)
        lines.append(SyncLine("pack", pack.slug, product_id, price_id, changed))
    return lines
