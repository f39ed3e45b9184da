"""Exact amounts: credits (3 decimal places) and USD (6 internally, rounded only when shown).

The one place where input becomes a credit amount and where credits convert to USD.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from config.errors import ValidationError

CREDIT_PLACES = 3
USD_PLACES = 6
CREDIT_QUANTUM = Decimal(1).scaleb(-CREDIT_PLACES)
USD_QUANTUM = Decimal(1).scaleb(-USD_PLACES)
MAX_CREDITS = Decimal("999999999999999.999")  # numeric(18, 3)


def parse_credits(
    value, *, field: str = "amount", allow_zero: bool = False, allow_negative: bool = False
) -> Decimal:
    """A user- or caller-supplied credit amount → Decimal, or ValidationError.

    Floats are refused (they are not exact); strings, ints and Decimals are accepted.
    """
    if isinstance(value, bool | float):
        raise ValidationError(
            f"{field} must be a decimal string or integer, not a float.",
            errors={field: ['Use a decimal string such as "12.5".']},
        )
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise ValidationError(
            f"{field} is not a number: {value!r}.", errors={field: ["Not a number."]}
        ) from None
    if not amount.is_finite():
        raise ValidationError(f"{field} must be finite.", errors={field: ["Not finite."]})
    if abs(amount) > MAX_CREDITS:
        raise ValidationError(f"{field} is too large.", errors={field: ["Too large."]})
    if amount != amount.quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP):
        raise ValidationError(
            f"{field} has more than {CREDIT_PLACES} decimal places: {value}.",
            errors={field: [f"At most {CREDIT_PLACES} decimal places."]},
        )
    if amount == 0 and not allow_zero:
        raise ValidationError(f"{field} must not be zero.", errors={field: ["Must not be zero."]})
    if amount < 0 and not allow_negative:
        raise ValidationError(
            f"{field} must be positive: {value}.", errors={field: ["Must be positive."]}
        )
    return amount.quantize(CREDIT_QUANTUM)


def to_credits(value) -> Decimal:
    """Quantize a value already known to be exact (e.g. read back from the database)."""
    return Decimal(value).quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP)


def credits_to_usd(credits: Decimal, usd_per_credit: Decimal) -> Decimal:
    """Credits × price, exact to 6 decimal places (ROUND_HALF_UP at the 6th)."""
    return (Decimal(credits) * Decimal(usd_per_credit)).quantize(USD_QUANTUM, ROUND_HALF_UP)


def round_usd_for_display(usd: Decimal, places: int = 2) -> Decimal:
    return Decimal(usd).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
