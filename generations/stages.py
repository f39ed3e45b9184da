"""A model's extra pipeline stages: what a generation costs besides its GPU time.

`AIModel.cost_stages` is a JSON list, one object per stage, costed per succeeded generation:

    [{"name": "upscale (CPU)", "kind": "cpu", "seconds": "4.5", "cpu_hourly_usd": "0.05"},
     {"name": "storage", "kind": "fixed", "usd": "0.0004"}]

* `cpu` — CPU pre/post-processing: `seconds` of CPU per generation at `cpu_hourly_usd` (USD per
  CPU-hour); costs seconds × rate / 3600 per generation.
* `fixed` — a fixed amount per generation (notification, storage, moderation API…): `usd`.

Amounts are decimal strings (numbers are accepted and stored as the decimal they were written
as), at most 9 decimal places, never negative; the math is exact `Decimal`. `clean_stages` checks
a value and returns it in that canonical form, with messages for people (by stage number and
field, never quoting the value). The unit-cost report gets the stages through
`infra_costs.registry` (see `stage_costs`): infra_costs knows models only by slug.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from infra_costs.registry import Stage

MAX_STAGES = 20
NAME_MAX = 60
PLACES = 9
MAX_SECONDS = Decimal(86_400)  # a day of CPU per generation is surely a typo
MAX_USD = Decimal(1_000)  # per generation, or per CPU-hour

FIELDS = {"cpu": ("seconds", "cpu_hourly_usd"), "fixed": ("usd",)}
LABELS = {"seconds": "CPU seconds", "cpu_hourly_usd": "CPU rate (USD per hour)", "usd": "USD"}
LIMITS = {"seconds": MAX_SECONDS, "cpu_hourly_usd": MAX_USD, "usd": MAX_USD}
EXAMPLE = (
    '[{"name": "upscale (CPU)", "kind": "cpu", "seconds": "4.5", "cpu_hourly_usd": "0.05"}, '
    '{"name": "storage", "kind": "fixed", "usd": "0.0004"}]'
)


def _amount(value: Any, field: str) -> tuple[Decimal | None, str | None]:
    """(the exact amount, None) or (None, what is wrong with it)."""
    label = LABELS[field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f'{label} must be a number such as "0.05".'
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        return None, f'{label} must be a number such as "0.05".'
    if not amount.is_finite():
        return None, f'{label} must be a number such as "0.05".'
    if amount < 0:
        return None, f"{label} must be 0 or more."
    if amount > LIMITS[field]:
        return None, f"{label} must be at most {LIMITS[field]:,f}."
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PLACES:
        return None, f"{label} has more than {PLACES} decimal places."
    return amount, None


def _canonical(amount: Decimal) -> str:
    return f"{amount.normalize():f}"


def stage_errors(value: Any) -> tuple[list[dict[str, str]], list[str]]:
    """(the stages in canonical form, the problems — empty when the value is valid)."""
    if value in (None, ""):
        return [], []
    if not isinstance(value, list):
        return [], [f"Give a list of stages, e.g. {EXAMPLE}"]
    if len(value) > MAX_STAGES:
        return [], [f"At most {MAX_STAGES} stages."]
    out: list[dict[str, str]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for n, item in enumerate(value, start=1):
        where = f"Stage {n}"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object with a name, a kind and its amounts.")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where} needs a name.")
            continue
        name = " ".join(name.split())
        if len(name) > NAME_MAX:
            problems.append(f"{where}: the name is too long (at most {NAME_MAX} characters).")
            continue
        where = f"Stage {n} ({name})"
        if name.casefold() in seen:
            problems.append(f"{where}: another stage has the same name.")
            continue
        seen.add(name.casefold())
        kind = item.get("kind")
        if kind not in FIELDS:
            problems.append(f'{where}: kind must be "cpu" or "fixed".')
            continue
        expected = set(FIELDS[kind])
        unknown = set(item) - expected - {"name", "kind"}
        if unknown:
            allowed = ", ".join(("name", "kind", *FIELDS[kind]))
            problems.append(f"{where}: a {kind} stage has only {allowed}.")
            continue
        stage = {"name": name, "kind": kind}
        for field in FIELDS[kind]:
            if field not in item:
                problems.append(f"{where}: {LABELS[field]} is missing.")
                continue
            amount, problem = _amount(item[field], field)
            if problem:
                problems.append(f"{where}: {problem}")
            else:
                stage[field] = _canonical(amount)
        if len(stage) == 2 + len(FIELDS[kind]):
            out.append(stage)
    return (out if not problems else []), problems


def clean_stages(value: Any) -> list[dict[str, str]]:
    """The stages in canonical form (amounts as decimal strings), or a ValidationError with
    every problem."""
    stages, problems = stage_errors(value)
    if problems:
        raise ValidationError(problems)
    return stages


def validate_stages(value: Any) -> None:
    """Model field validator (the admin and `full_clean`)."""
    clean_stages(value)


def as_registry_stages(value: Any) -> list[Stage]:
    """Stored stages → `infra_costs.registry.Stage` (invalid stored data raises ValueError:
    a report must never silently drop a cost)."""
    stages, problems = stage_errors(value)
    if problems:
        raise ValueError("; ".join(problems))
    out = []
    for s in stages:
        if s["kind"] == "cpu":
            out.append(Stage.cpu(s["name"], Decimal(s["seconds"]), Decimal(s["cpu_hourly_usd"])))
        else:
            out.append(Stage.fixed(s["name"], Decimal(s["usd"])))
    return out


def stage_costs(model_slugs: Iterable[str]) -> dict[str, list[Stage]]:
    """The provider registered with `infra_costs.registry`: each known slug's stages."""
    from generations.models import AIModel

    return {
        slug: as_registry_stages(stages)
        for slug, stages in AIModel.objects.filter(slug__in=list(model_slugs))
        .exclude(cost_stages=[])
        .values_list("slug", "cost_stages")
    }


def usd_per_generation(value: Any) -> Decimal:
    """Σ of the stages' cost per generation (exact to 50 significant digits)."""
    from decimal import localcontext

    with localcontext() as ctx:
        ctx.prec = 50
        return sum((s.usd_per_generation for s in as_registry_stages(value)), Decimal(0))
