"""External cost per generation (third-party API fees, licensing), owned by the generations app.

infra_costs never imports generations; generations registers a provider at start-up instead:

    from infra_costs.registry import set_external_costs_provider
    set_external_costs_provider(lambda slugs: {slug: Decimal(...) for slug in slugs})

`external_costs_for(slugs)` returns USD per succeeded generation for each slug (0 when no
provider is registered or the provider does not know the slug).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

ExternalCostsProvider = Callable[[set[str]], Mapping[str, Decimal]]

_provider: ExternalCostsProvider | None = None


def set_external_costs_provider(fn: ExternalCostsProvider | None) -> None:
    """Register (or with None, remove) the provider of external costs per generation."""
    global _provider
    _provider = fn


def external_costs_for(model_slugs: Iterable[str]) -> dict[str, Decimal]:
    slugs = set(model_slugs)
    known = dict(_provider(slugs)) if _provider is not None and slugs else {}
    out: dict[str, Decimal] = {}
    for slug in slugs:
        value = known.get(slug)
        out[slug] = Decimal(str(value)) if value is not None else Decimal(0)
        if out[slug] < 0:
            raise ValueError(f"External cost of {slug!r} is negative: {value}")
    return out
