"""How generations answers the infrastructure layer, which never imports it."""

from __future__ import annotations

from decimal import Decimal

from generations.models import AIModel


def on_runs_imported(sender, *, model_slugs, **kwargs) -> None:
    """Imported history names models the catalog may not know: create them inactive (no pool,
    no price) so reports can name them and staff can complete them in the admin."""
    known = set(AIModel.objects.filter(slug__in=model_slugs).values_list("slug", flat=True))
    AIModel.objects.bulk_create(
        [
            AIModel(
                slug=slug, name=slug, is_active=False, description="Created by a history import."
            )
            for slug in sorted(set(model_slugs) - known)
        ],
        ignore_conflicts=True,
    )


def external_costs(model_slugs: set[str]) -> dict[str, Decimal]:
    """USD per succeeded generation paid to third parties, per model slug."""
    return dict(
        AIModel.objects.filter(slug__in=model_slugs).values_list("slug", "external_cost_usd")
    )
