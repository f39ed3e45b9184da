"""The inputs of a growth scenario: their shape, their JSON form and their validation.

One set of rules for the staff page, the API and saved scenarios (`parse_inputs`): a bad input
is a `config.errors.ValidationError` with messages per field (dotted for nested ones, e.g.
`model_mix`, `baseline.2.monthly_usd`), every problem at once, and nothing is evaluated or
saved. Messages never quote what was sent, except a model or plan slug that is a valid slug.

Percentages are given in percent (0–100, up to 4 decimal places); the model mix and the plan
mix must each sum to exactly 100. Money is USD as a decimal (strings preferred: "0.05").

JSON form (what the API accepts and what a saved scenario stores)::

    {
      "mau": 10000,
      "generations_per_user": "40",
      "model_mix": {"sdxl": "80", "wan-video": "20"},
      "cache_hit_pct": "25",
      "conversion_pct": "5",
      "plan_mix": {"starter": "60", "creator": "30", "studio": "10"},
      "baseline": [{"name": "Database", "monthly_usd": "250"}],
      "cost_overrides": {"wan-video": "0.05"},
      "costs_start": "2026-01-01", "costs_end": "2026-01-31"
    }

`cost_overrides` (optional) replaces a model's measured cost per generation (USD); it is how
a model with no measured cost gets one. `costs_start`/`costs_end` (optional, default: the last
30 days, end exclusive) is the period whose unit-cost report gives the measured costs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from config import dates
from config.errors import ValidationError

MAU_MAX = 1_000_000_000
GENERATIONS_PER_USER_MAX = Decimal(100_000)
USD_MAX = Decimal(1_000_000_000)  # a baseline line per month
COST_PER_GENERATION_MAX = Decimal(1_000)
PCT_PLACES = 4
USD_PLACES = 6
MIX_MAX_ENTRIES = 50
BASELINE_MAX_ITEMS = 20
NAME_MAX = 80
PERIOD_MAX_DAYS = 366
DEFAULT_PERIOD_DAYS = 30
HUNDRED = Decimal(100)
ZERO = Decimal(0)

FIELDS = (
    "mau",
    "generations_per_user",
    "model_mix",
    "cache_hit_pct",
    "conversion_pct",
    "plan_mix",
    "baseline",
    "cost_overrides",
    "costs_start",
    "costs_end",
)
REQUIRED = ("mau", "generations_per_user", "model_mix", "conversion_pct", "plan_mix")

_DIGITS = re.compile(r"^\d+(\.\d+)?$")
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class BaselineItem:
    name: str
    monthly_usd: Decimal


@dataclass(frozen=True)
class ScenarioInputs:
    mau: int
    generations_per_user: Decimal
    model_mix: dict[str, Decimal]  # model slug → percent of generations
    conversion_pct: Decimal
    plan_mix: dict[str, Decimal]  # plan slug → percent of paid users
    costs_start: date
    costs_end: date
    cache_hit_pct: Decimal = ZERO
    baseline: tuple[BaselineItem, ...] = ()
    cost_overrides: dict[str, Decimal] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON form (decimals as strings); `parse_inputs(x.as_json())` gives x back."""
        return {
            "mau": self.mau,
            "generations_per_user": str(self.generations_per_user),
            "model_mix": {k: str(v) for k, v in self.model_mix.items()},
            "cache_hit_pct": str(self.cache_hit_pct),
            "conversion_pct": str(self.conversion_pct),
            "plan_mix": {k: str(v) for k, v in self.plan_mix.items()},
            "baseline": [
                {"name": b.name, "monthly_usd": str(b.monthly_usd)} for b in self.baseline
            ],
            "cost_overrides": {k: str(v) for k, v in self.cost_overrides.items()},
            "costs_start": self.costs_start.isoformat(),
            "costs_end": self.costs_end.isoformat(),
        }


def default_period(today: date) -> tuple[date, date]:
    """The last 30 days, today excluded (today is not over)."""
    return today - timedelta(days=DEFAULT_PERIOD_DAYS), today


class _Bad(Exception):
    pass


def _slug_text(key: str) -> str:
    """How a sent key may be named in a message: a valid slug as is, anything else not at all."""
    return f"“{key}”" if isinstance(key, str) and _SLUG.match(key) else "(not a valid slug)"


def _decimal(
    value: Any,
    *,
    low: Decimal,
    high: Decimal,
    places: int,
    what: str = "a number",
    low_open: bool = False,
) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _Bad(f"Enter {what}.")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad(f"Enter {what}.")
        value = format(Decimal(repr(value)), "f")
    if isinstance(value, int):
        if abs(value) > 10**18:  # and str() of a giant int is refused by Python itself
            raise _Bad("Must not be negative." if value < 0 else f"At most {high:,}.")
        value = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Bad(f"Enter {what}.")
        value = format(value, "f")
    if not isinstance(value, str):
        raise _Bad(f"Enter {what}.")
    text = value.strip()
    if text.startswith("-") and _DIGITS.match(text[1:]):
        raise _Bad("Must not be negative.")
    if not _DIGITS.match(text):
        raise _Bad(f"Enter {what}.")
    whole, _, fraction = text.partition(".")
    if len(whole.lstrip("0")) > 15:
        raise _Bad(f"At most {high:,}.")
    if len(fraction.rstrip("0")) > places:
        raise _Bad("Enter a whole number." if places == 0 else f"At most {places} decimal places.")
    text = f"{whole}.{fraction.rstrip('0') or '0'}"
    number = Decimal(text).normalize()  # canonical: no trailing zeros ("40", "0.05")
    if number > high:
        raise _Bad(f"At most {high:,}.")
    if number < low or (low_open and number == low):
        raise _Bad(f"Must be more than {low}." if low_open else f"At least {low}.")
    if number.as_tuple().exponent > 0:
        number = number.quantize(Decimal(1))
    return number


def _pct(value: Any) -> Decimal:
    return _decimal(value, low=ZERO, high=HUNDRED, places=PCT_PLACES, what="a percentage (0–100)")


def _mix(
    value: Any,
    *,
    known: Mapping[str, str | None],
    kind: str,
    errors: dict[str, list[str]],
    key: str,
) -> dict[str, Decimal]:
    """A slug → percent mapping summing to exactly 100. `known` maps each usable slug to None
    and each known but unusable one to the reason why."""
    if not isinstance(value, Mapping) or not value:
        errors.setdefault(key, []).append(f"Give at least one {kind} with its share in percent.")
        return {}
    if len(value) > MIX_MAX_ENTRIES:
        errors.setdefault(key, []).append(f"At most {MIX_MAX_ENTRIES} {kind}s.")
        return {}
    out: dict[str, Decimal] = {}
    ok = True
    for slug, share in value.items():
        if slug not in known:
            errors.setdefault(key, []).append(f"Unknown {kind} {_slug_text(slug)}.")
            ok = False
            continue
        if known[slug] is not None:
            errors.setdefault(key, []).append(f"{kind.capitalize()} “{slug}”: {known[slug]}")
            ok = False
            continue
        try:
            pct = _pct(share)
        except _Bad as exc:
            errors.setdefault(key, []).append(f"“{slug}”: {exc}")
            ok = False
            continue
        if pct:
            out[slug] = pct
    if ok:
        total = sum(out.values(), ZERO)
        if total != HUNDRED:
            errors.setdefault(key, []).append(
                f"The shares must add up to 100% (they add up to {total.normalize():f}%)."
            )
    return out


def _baseline(value: Any, errors: dict[str, list[str]]) -> tuple[BaselineItem, ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list):
        errors.setdefault("baseline", []).append(
            "A list of items, each with a name and a monthly cost in USD."
        )
        return ()
    if len(value) > BASELINE_MAX_ITEMS:
        errors.setdefault("baseline", []).append(f"At most {BASELINE_MAX_ITEMS} items.")
        return ()
    items = []
    for i, item in enumerate(value):
        where = f"baseline.{i}"
        if not isinstance(item, Mapping) or set(item) - {"name", "monthly_usd"}:
            errors.setdefault(where, []).append("Each item has a `name` and a `monthly_usd`.")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.setdefault(f"{where}.name", []).append("Give the item a name.")
            continue
        name = name.strip()
        if len(name) > NAME_MAX:
            errors.setdefault(f"{where}.name", []).append(f"At most {NAME_MAX} characters.")
            continue
        if _CONTROL.search(name):
            errors.setdefault(f"{where}.name", []).append("No control characters, please.")
            continue
        try:
            usd = _decimal(
                item.get("monthly_usd"), low=ZERO, high=USD_MAX, places=USD_PLACES, what="USD"
            )
        except _Bad as exc:
            errors.setdefault(f"{where}.monthly_usd", []).append(str(exc))
            continue
        items.append(BaselineItem(name=name, monthly_usd=usd))
    return tuple(items)


def _date(value: Any) -> date:
    if isinstance(value, date):
        day = value
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise _Bad("Enter a date (YYYY-MM-DD).") from None
    else:
        raise _Bad("Enter a date (YYYY-MM-DD).")
    if not dates.in_range(day):
        raise _Bad(dates.OUT_OF_RANGE)
    return day


def parse_inputs(
    data: Any,
    *,
    models: Mapping[str, str | None] | Iterable[str],
    plans: Mapping[str, str | None] | Iterable[str],
    today: date,
) -> ScenarioInputs:
    """Validate scenario inputs in their JSON form (see the module docstring).

    `models` and `plans` are the slugs that exist: a mapping gives, for a known slug that may
    not be used, the reason (e.g. a plan priced per contract). Raises ValidationError with
    every problem found."""
    models = models if isinstance(models, Mapping) else dict.fromkeys(models)
    plans = plans if isinstance(plans, Mapping) else dict.fromkeys(plans)
    if not isinstance(data, Mapping):
        raise ValidationError("Scenario inputs must be a JSON object.")
    errors: dict[str, list[str]] = {}
    for key in data:
        if key not in FIELDS:
            errors.setdefault(str(key)[:60], []).append("Unknown field.")
    for key in REQUIRED:
        if data.get(key) in (None, ""):
            errors.setdefault(key, []).append("Required.")

    def number(key: str, **kw) -> Decimal:
        if key in errors or data.get(key) in (None, ""):
            return ZERO
        try:
            return _decimal(data[key], **kw)
        except _Bad as exc:
            errors.setdefault(key, []).append(str(exc))
            return ZERO

    mau = number("mau", low=ZERO, high=Decimal(MAU_MAX), places=0, what="a whole number of users")
    per_user = number(
        "generations_per_user", low=ZERO, high=GENERATIONS_PER_USER_MAX, places=PCT_PLACES
    )
    pct_kw = {"low": ZERO, "high": HUNDRED, "places": PCT_PLACES, "what": "a percentage (0–100)"}
    conversion = number("conversion_pct", **pct_kw)
    cache = number("cache_hit_pct", **pct_kw)
    model_mix = plan_mix = {}
    if "model_mix" not in errors:
        model_mix = _mix(
            data["model_mix"], known=models, kind="model", errors=errors, key="model_mix"
        )
    if "plan_mix" not in errors:
        plan_mix = _mix(data["plan_mix"], known=plans, kind="plan", errors=errors, key="plan_mix")
    baseline = _baseline(data.get("baseline"), errors)

    overrides: dict[str, Decimal] = {}
    raw_overrides = data.get("cost_overrides") or {}
    if not isinstance(raw_overrides, Mapping):
        errors.setdefault("cost_overrides", []).append(
            "A mapping of model slug to USD per generation."
        )
    else:
        for slug, cost in raw_overrides.items():
            if cost in (None, ""):
                continue
            if slug not in models:
                errors.setdefault("cost_overrides", []).append(f"Unknown model {_slug_text(slug)}.")
                continue
            try:
                overrides[slug] = _decimal(
                    cost, low=ZERO, high=COST_PER_GENERATION_MAX, places=USD_PLACES, what="USD"
                )
            except _Bad as exc:
                errors.setdefault("cost_overrides", []).append(f"“{slug}”: {exc}")
        if "model_mix" not in errors:
            # Only the models of the mix matter; an override of another one is dropped.
            overrides = {k: v for k, v in overrides.items() if k in model_mix}

    start, end = default_period(today)
    for key in ("costs_start", "costs_end"):
        if data.get(key) in (None, ""):
            continue
        try:
            day = _date(data[key])
        except _Bad as exc:
            errors.setdefault(key, []).append(str(exc))
            continue
        if key == "costs_start":
            start = day
        else:
            end = day
    if not ({"costs_start", "costs_end"} & set(errors)):
        if end <= start:
            errors.setdefault("costs_end", []).append("Must be after the start.")
        elif (end - start).days > PERIOD_MAX_DAYS:
            errors.setdefault("costs_end", []).append(
                f"Measure costs over at most {PERIOD_MAX_DAYS} days."
            )

    if errors:
        first_key, first = next(iter(errors.items()))
        detail = first[0] if len(errors) == 1 else f"{first_key}: {first[0]}"
        raise ValidationError(detail, errors=errors)
    return ScenarioInputs(
        mau=int(mau),
        generations_per_user=per_user,
        model_mix=model_mix,
        conversion_pct=conversion,
        plan_mix=plan_mix,
        costs_start=start,
        costs_end=end,
        cache_hit_pct=cache,
        baseline=baseline,
        cost_overrides=overrides,
    )
