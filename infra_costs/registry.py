"""Per-generation costs owned by the generations app: the external cost (third-party API fees,
licensing) and the extra pipeline stages (CPU processing, fixed costs; see `Stage` below).

infra_costs never imports generations; generations registers a provider at start-up instead:

    from infra_costs.registry import set_external_costs_provider
    set_external_costs_provider(lambda slugs: {slug: Decimal(...) for slug in slugs})

`external_costs_for(slugs)` returns USD per succeeded generation for each slug (0 when no
provider is registered or the provider does not know the slug).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
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


# --- Pipeline stages per generation ---------------------------------------------------------------
#
# A model may run extra per-generation stages besides its GPU time: CPU pre/post-processing
# (seconds at a CPU rate, USD per CPU-hour) and fixed costs (notification, storage). They are not
# infrastructure of the GPU pools: the unit-cost report shows them as their own lines and adds them
# to the cost per generation like the external cost. The generations app owns them and registers a
# provider:
#
#     from infra_costs.registry import Stage, set_stage_costs_provider
#     set_stage_costs_provider(lambda slugs: {"sdxl": [Stage.fixed("storage", Decimal("0.0004"))]})

STAGE_KINDS = ("cpu", "fixed")
_SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True)
class Stage:
    """One extra stage of a model's pipeline, costed per succeeded generation."""

    name: str
    kind: str  # "cpu": cpu_seconds at cpu_hourly_usd; "fixed": usd
    usd: Decimal = Decimal(0)
    cpu_seconds: Decimal = Decimal(0)
    cpu_hourly_usd: Decimal = Decimal(0)

    @classmethod
    def cpu(cls, name: str, seconds: Decimal, hourly_usd: Decimal) -> Stage:
        return cls(name=name, kind="cpu", cpu_seconds=seconds, cpu_hourly_usd=hourly_usd)

    @classmethod
    def fixed(cls, name: str, usd: Decimal) -> Stage:
        return cls(name=name, kind="fixed", usd=usd)

    def cost(self, generations: int) -> Decimal:
        """USD for `generations` succeeded generations (one division, in the caller's context:
        the report computes with 50 significant digits)."""
        if self.kind == "cpu":
            return generations * self.cpu_seconds * self.cpu_hourly_usd / _SECONDS_PER_HOUR
        return generations * self.usd

    @property
    def usd_per_generation(self) -> Decimal:
        return self.cost(1)


StageCostsProvider = Callable[[set[str]], Mapping[str, Sequence[Stage]]]

_stage_provider: StageCostsProvider | None = None


def set_stage_costs_provider(fn: StageCostsProvider | None) -> None:
    """Register (or with None, remove) the provider of per-generation pipeline stages."""
    global _stage_provider
    _stage_provider = fn


def stage_costs_for(model_slugs: Iterable[str]) -> dict[str, list[Stage]]:
    """Each slug's stages (an empty list when no provider is registered or the provider does
    not know the slug)."""
    slugs = set(model_slugs)
    known = dict(_stage_provider(slugs)) if _stage_provider is not None and slugs else {}
    out: dict[str, list[Stage]] = {}
    for slug in slugs:
        stages = list(known.get(slug) or ())
        for stage in stages:
            if stage.kind not in STAGE_KINDS:
                raise ValueError(f"Stage {stage.name!r} of {slug!r} has unknown kind {stage.kind}")
            if min(stage.usd, stage.cpu_seconds, stage.cpu_hourly_usd) < 0:
                raise ValueError(f"Stage {stage.name!r} of {slug!r} has a negative amount")
        out[slug] = stages
    return out


# --- Units per model (prices that follow the request) ---------------------------------------------
#
# A model priced per unit (per second of video, per megapixel: a price table in the generations
# app) has a cost per unit besides its cost per generation. infra_costs does not know params or
# prices: the generations app registers a provider that, for the model slugs of a report and its
# period, returns each priced-by-params model's unit name and the units its succeeded
# generations of the period produced:
#
#     set_units_provider(lambda slugs, start_at, end_at: {"clip": ("second", Decimal(120))})

UnitsProvider = Callable[[set[str], datetime, datetime], Mapping[str, tuple[str, Decimal]]]

_units_provider: UnitsProvider | None = None


def set_units_provider(fn: UnitsProvider | None) -> None:
    """Register (or with None, remove) the provider of units per model."""
    global _units_provider
    _units_provider = fn


def units_for(
    model_slugs: Iterable[str], start_at: datetime, end_at: datetime
) -> dict[str, tuple[str, Decimal]]:
    """{slug: (unit, units)} for the slugs priced per unit (others are absent)."""
    slugs = set(model_slugs)
    if _units_provider is None or not slugs:
        return {}
    return {
        slug: (str(unit), Decimal(units))
        for slug, (unit, units) in _units_provider(slugs, start_at, end_at).items()
        if slug in slugs
    }
