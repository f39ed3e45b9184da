"""Prices that follow the request: a price version may carry a small declarative price table.

A table (JSON, set in the admin, never code)::

    {
      "base": "2",                                          # credits per request (default 0)
      "per": [
        {"param": "duration_s", "credits": "1.5", "unit": "second"},   # per unit of a param
        {"param": "steps", "credits": "0.01"},
        {"param": "width*height", "per_megapixel": "0.5"},  # per million of a product
        {"param": "batch_size", "multiplier": true}         # multiplies the whole price
      ],
      "min": "1",                                           # floor (default 0.001)
      "unit": "duration_s"                                  # the cost unit (optional)
    }

    price = round_half_up_3dp(max(min, 0.001, (base + Σ quantity × credits) × Π multipliers))

* A term's `param` names one param or a product of up to three (`width*height`); its quantity
  is the product of their values (÷ 1,000,000 for `per_megapixel`).
* A param the request leaves out takes the term's `default`, else the default in the model's
  params schema, else 0 (1 for a multiplier).
* Quantities must be numbers ≥ 0 (the model's params schema should also say so).
* Arithmetic is exact (Decimal); the only rounding is of the final price, to 3 decimal places,
  half up (`CREDIT_QUANTUM`, ROUND_HALF_UP) — the one named rounding boundary. Breakdown
  lines are exact and may show more places.
* `unit` names the term whose quantity (× the multipliers) is the model's cost unit in the
  unit-cost report (default: the first priced term): "cost per second", "per megapixel".

A flat price version has no table: its `credits` is the price of every request. A table
version's `credits` is its reference price (the table with every param at its default), what
the catalog shows as "from".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

from config.errors import ValidationError
from credits.money import CREDIT_QUANTUM, MAX_CREDITS

MAX_TERMS = 10
MAX_FACTORS = 3
RATE_PLACES = 6  # a per-unit price may be finer than a credit (0.000001 per token)
MEGA = Decimal(1_000_000)
KINDS = ("credits", "per_megapixel", "multiplier")
KEYS = {"base", "per", "min", "unit"}
TERM_KEYS = {"param", "credits", "per_megapixel", "multiplier", "default", "unit"}
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ZERO = Decimal(0)
ONE = Decimal(1)


# --- Validation (on save: the admin form and `services.rate_set`) -------------------------------


def _amount(value, *, places: int) -> Decimal | None:
    """A decimal string or integer ≥ 0 with at most `places` decimals, or None."""
    if isinstance(value, bool | float) or not isinstance(value, str | int):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_CREDITS:
        return None
    if amount != amount.quantize(Decimal(1).scaleb(-places)):
        return None
    return amount


def _factors(param) -> list[str] | None:
    if not isinstance(param, str):
        return None
    names = [p.strip() for p in param.split("*")]
    if not 1 <= len(names) <= MAX_FACTORS or not all(PARAM_NAME.match(n) for n in names):
        return None
    return names


def price_table_errors(table, *, params_schema: dict | None = None) -> list[str]:
    """What is wrong with `table` (empty when it is a valid price table), in words for the
    admin. With `params_schema`, every param it prices must be a number in that schema."""
    if not isinstance(table, dict):
        return ["The price table must be a JSON object."]
    errors: list[str] = []
    unknown = sorted(set(table) - KEYS)
    if unknown:
        errors.append(f"Unknown key(s): {', '.join(str(k)[:30] for k in unknown[:5])}.")
    for key in ("base", "min"):
        if key in table and _amount(table[key], places=3) is None:
            errors.append(f"“{key}” must be a decimal string ≥ 0 with at most 3 decimals.")
    terms = table.get("per", [])
    if not isinstance(terms, list) or not terms or len(terms) > MAX_TERMS:
        errors.append(f"“per” must be a list of 1 to {MAX_TERMS} terms.")
        return errors
    properties = (params_schema or {}).get("properties") or {}
    priced: list[str] = []
    for i, term in enumerate(terms, start=1):
        where = f"Term {i}"
        if not isinstance(term, dict):
            errors.append(f"{where} must be a JSON object.")
            continue
        extra = sorted(set(term) - TERM_KEYS)
        if extra:
            errors.append(f"{where}: unknown key(s) {', '.join(str(k)[:30] for k in extra[:5])}.")
        names = _factors(term.get("param"))
        if names is None:
            errors.append(
                f"{where}: “param” must name a param (letters, digits, _) or a product of up "
                f"to {MAX_FACTORS} (“width*height”)."
            )
            continue
        kinds = [k for k in KINDS if k in term]
        if len(kinds) != 1:
            errors.append(
                f"{where}: give exactly one of “credits”, “per_megapixel” or “multiplier”."
            )
            continue
        kind = kinds[0]
        if kind == "multiplier":
            if term["multiplier"] is not True:
                errors.append(f"{where}: “multiplier” must be true.")
            if len(names) != 1:
                errors.append(f"{where}: a multiplier is one param.")
        elif _amount(term[kind], places=RATE_PLACES) is None:
            errors.append(
                f"{where}: “{kind}” must be a decimal string ≥ 0 with at most "
                f"{RATE_PLACES} decimals."
            )
        else:
            priced.append(term["param"])
        if "default" in term and _number(term["default"]) is None:
            errors.append(f"{where}: “default” must be a number ≥ 0.")
        if "unit" in term and (
            not isinstance(term["unit"], str) or not 0 < len(term["unit"]) <= 30
        ):
            errors.append(f"{where}: “unit” must be a short name (1–30 characters).")
        if params_schema is not None:
            for name in names:
                spec = properties.get(name)
                if not isinstance(spec, dict):
                    errors.append(f"{where}: the model's params schema has no “{name[:30]}”.")
                elif spec.get("type") not in ("integer", "number"):
                    errors.append(f"{where}: “{name[:30]}” must be a number in the params schema.")
    if "unit" in table and table["unit"] not in priced:
        errors.append("“unit” must be the “param” of a priced term (not a multiplier).")
    return errors


def price_table_validate(table, *, params_schema: dict | None = None) -> None:
    errors = price_table_errors(table, params_schema=params_schema)
    if errors:
        raise ValidationError(errors[0], errors={"price_table": errors})


# --- Pricing ------------------------------------------------------------------------------------


def _number(value) -> Decimal | None:
    """A JSON number ≥ 0 as an exact Decimal (None: not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        number = Decimal(value) if isinstance(value, int | Decimal) else Decimal(repr(value))
    except (InvalidOperation, ValueError, OverflowError):
        return None
    if not number.is_finite() or number < 0:
        return None
    return number


@dataclass(frozen=True)
class PriceLine:
    """One line of a quote: what a term added (or multiplied by)."""

    param: str
    quantity: Decimal
    kind: str
    rate: Decimal  # credits per unit, per megapixel, or the multiplier itself
    credits: Decimal | None  # exact, None for a multiplier

    def as_dict(self) -> dict[str, Any]:
        data = {
            "param": self.param,
            "quantity": _text(self.quantity),
            "kind": self.kind,
            "rate": _text(self.rate),
        }
        if self.credits is not None:
            data["credits"] = _text(self.credits)
        return data


@dataclass(frozen=True)
class Price:
    credits: Decimal  # rounded to 3 dp, half up
    exact: Decimal
    lines: list[PriceLine]
    units: Decimal | None  # the cost unit's quantity (table prices only)
    unit: str | None


def _text(value: Decimal) -> str:
    return f"{value.normalize():f}"


def schema_defaults(params_schema: dict | None) -> dict:
    properties = (params_schema or {}).get("properties") or {}
    return {
        name: spec["default"]
        for name, spec in properties.items()
        if isinstance(spec, dict) and "default" in spec
    }


def _value(name: str, term: dict, params: dict, defaults: dict, *, fallback: Decimal) -> Decimal:
    if name in params:
        raw = params[name]
    elif "default" in term and len(_factors(term["param"]) or []) == 1:
        raw = term["default"]
    elif name in defaults:
        raw = defaults[name]
    else:
        return fallback
    number = _number(raw)
    if number is None:
        label = name.replace("_", " ")
        label = label[:1].upper() + label[1:]
        raise ValidationError(
            f"{label[:40]} must be a number, 0 or more, to price this request.",
            errors={f"params.{name[:40]}": ["Must be a number, 0 or more."]},
        )
    return number


def unit_name(term: dict) -> str:
    if isinstance(term.get("unit"), str):
        return term["unit"]
    return "megapixel" if "per_megapixel" in term else str(term["param"])


def table_price(table: dict, params: dict, *, defaults: dict | None = None) -> Price:
    """The exact price of `params` under a valid `table` (see the module docstring)."""
    defaults = defaults or {}
    params = params if isinstance(params, dict) else {}
    with localcontext() as ctx:
        ctx.prec = 80  # exact for any input that can give a storable price
        total = Decimal(table.get("base", 0))
        multiplier = ONE
        lines: list[PriceLine] = []
        unit_term: tuple[dict, Decimal] | None = None
        for term in table["per"]:
            names = _factors(term["param"]) or []
            if "multiplier" in term:
                factor = _value(names[0], term, params, defaults, fallback=ONE)
                multiplier *= factor
                lines.append(PriceLine(term["param"], factor, "multiplier", factor, None))
                continue
            quantity = ONE
            for name in names:
                quantity *= _value(name, term, params, defaults, fallback=ZERO)
            kind = "per_megapixel" if "per_megapixel" in term else "credits"
            if kind == "per_megapixel":
                quantity /= MEGA
            rate = Decimal(term[kind])
            credits = quantity * rate
            total += credits
            lines.append(PriceLine(term["param"], quantity, kind, rate, credits))
            wanted = table.get("unit")
            if unit_term is None and (wanted is None or wanted == term["param"]):
                unit_term = (term, quantity)
        exact = max(total * multiplier, Decimal(table.get("min", 0)), CREDIT_QUANTUM)
        if exact > MAX_CREDITS:
            raise ValidationError(
                "These params give a price too large to charge.",
                errors={"params": ["The price is too large."]},
            )
        credits = exact.quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP)
        units = unit_term[1] * multiplier if unit_term else None
    return Price(
        credits=credits,
        exact=exact,
        lines=lines,
        units=units,
        unit=unit_name(unit_term[0]) if unit_term else None,
    )


def rate_price(rate, params: dict) -> Price:
    """The price of `params` under a price version (flat or table). The model's params schema
    gives the defaults of params the request leaves out."""
    if not rate.price_table:
        return Price(credits=rate.credits, exact=rate.credits, lines=[], units=None, unit=None)
    return table_price(rate.price_table, params, defaults=schema_defaults(rate.model.params_schema))


_LOOK_UP = object()


def price_for(
    rate, params: dict, *, organization_id: int | None = None, at=None, override=_LOOK_UP
) -> Decimal:
    """The credits `params` cost under `rate`: what the quote shows, the submission holds and
    (with the actual units) the finish captures, at most the hold.

    With `organization_id` the organization's price override in force at `at` (its contract,
    `generations.overrides`) applies — the ONE place it does: a fixed price replaces the list
    price, a discount takes its percentage off it (rounded half up to 3 places, at least
    0.001). `override`: that override (or None) when the caller already read it at `at` (the
    submission reads it with its price, `services.submission_lookup`)."""
    credits = rate_price(rate, params).credits
    if organization_id is None:
        return credits
    if override is _LOOK_UP:
        override = override_for(organization_id, rate.model_id, at)
    return override_apply(credits, override)


def override_for(organization_id: int, model_id: int, at):
    """The organization's price override in force for the model at `at` (now), or None."""
    from django.utils import timezone

    from generations.overrides.selectors import override_in_force

    return override_in_force(
        organization_id=organization_id, model_id=model_id, at=at or timezone.now()
    )


def override_apply(credits: Decimal, override) -> Decimal:
    """The list price `credits` after `override` (None: unchanged)."""
    if override is None:
        return credits
    if override.credits is not None:
        return override.credits
    off = credits * override.discount_percent / Decimal(100)
    discounted = (credits - off).quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP)
    return max(discounted, CREDIT_QUANTUM)


def priced_units(rate, units: dict | None) -> dict:
    """Of the actual units a backend reported, those the rate's table prices (anything else it
    reported is ignored)."""
    if not units or not isinstance(units, dict) or not rate.price_table:
        return {}
    priced = {n for t in rate.price_table.get("per", []) for n in (_factors(t["param"]) or [])}
    return {k: v for k, v in units.items() if k in priced}
