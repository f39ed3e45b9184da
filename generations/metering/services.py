"""Writes of metering: a meter's price changes by a new version; a batch of usage events is
recorded and charged all or nothing, each event exactly once.

A batch (`usage_events_record`):

1. every event is checked first, writing nothing; any problem refuses the whole batch with a
   400 naming each bad item (`events.3.quantity`), never echoing what was sent;
2. one durable transaction: the organization's credit account is locked (concurrent batches of
   one organization run one after the other), then each event, in id order, is inserted — its
   `event_id` is unique per organization, so a concurrent duplicate waits for the first and
   then finds it — and charged through `credits.services.usage_charge` (a hold captured at
   once, keyed by the event), plus one audit row for the batch;
3. an event already recorded with the same content is a replay (the same result, nothing
   charged again); with other content it is a 409 and the batch writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import APIKey, Organization, User
from accounts.services import audit_record
from config.errors import IdempotencyConflict, ValidationError
from credits.money import CREDIT_QUANTUM
from credits.services import account_lock, usage_charge
from generations.metering.models import Meter, MeterRate, UsageEvent

MAX_EVENTS = 100
ID_MAX = 200
TEXT_MAX = 255
DATA_MAX_BYTES = 4096
QUANTITY_MAX = Decimal(10) ** 12
QUANTITY_PLACES = 6
PAST_DAYS = 35  # an event may be reported up to this long after it happened
FUTURE_S = 300  # clock skew allowed
EVENT_KEYS = {"id", "type", "source", "subject", "time", "quantity", "data", "specversion"}


# --- Prices ------------------------------------------------------------------------------------


@transaction.atomic
def meter_rate_set(
    *,
    meter: Meter,
    credits_per_unit,
    reason: str,
    actor: User | None,
    effective_from: datetime | None = None,
) -> MeterRate:
    """A new price version of a meter (never an edit): who, when and why are kept."""
    amount = _decimal(credits_per_unit)
    if amount is None or amount <= 0:
        raise ValidationError(
            "The price per unit must be a decimal above 0 with at most 6 places.",
            errors={"credits_per_unit": ["A decimal above 0, at most 6 places."]},
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the price changes.", errors={"reason": ["Required."]})
    effective_from = effective_from or timezone.now()
    rate = MeterRate.objects.create(
        meter=meter,
        credits_per_unit=amount,
        effective_from=effective_from,
        set_by=actor,
        reason=reason[:TEXT_MAX],
    )
    audit_record(
        action="meter_rate.set",
        actor=actor,
        target=rate,
        data={
            "meter": meter.slug,
            "credits_per_unit": f"{amount.normalize():f}",
            "effective_from": effective_from.isoformat(),
            "reason": reason[:TEXT_MAX],
        },
    )
    return rate


def meter_rate_at(*, meter: Meter, when: datetime) -> MeterRate | None:
    return meter.rates.filter(effective_from__lte=when).order_by("-effective_from").first()


# --- Checking events (no writes) ---------------------------------------------------------------


def _decimal(value) -> Decimal | None:
    """A decimal string or integer (never a float: not exact) ≥ 0 with at most 6 places."""
    if isinstance(value, bool | float) or not isinstance(value, str | int):
        return None
    try:
        number = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or number < 0 or number > QUANTITY_MAX:
        return None
    if number != number.quantize(Decimal(1).scaleb(-QUANTITY_PLACES)):
        return None
    return number


def _text(value, *, limit: int) -> str | None:
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        return None
    return value


@dataclass
class _Checked:
    index: int
    event_id: str
    meter: Meter
    rate: MeterRate
    source: str
    subject: str
    time: datetime
    quantity: Decimal
    data: dict
    credits: Decimal
    fingerprint: str


def _fingerprint(
    meter: str, source: str, subject: str, when: datetime, quantity: Decimal, data
) -> str:
    body = json.dumps(
        [meter, source, subject, when.isoformat(), f"{quantity.normalize():f}", data],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _check(index: int, event, *, meters: dict[str, Meter], now: datetime, errors: dict):
    at = f"events.{index}"

    def bad(field: str, message: str) -> None:
        errors.setdefault(f"{at}.{field}" if field else at, []).append(message)

    if not isinstance(event, dict):
        bad("", "Must be a JSON object.")
        return None
    for key in sorted(set(event) - EVENT_KEYS, key=str)[:5]:
        bad(str(key)[:30], "Unknown field.")
    event_id = _text(event.get("id"), limit=ID_MAX)
    if not event_id or not event_id.strip():
        bad("id", f"Required: 1–{ID_MAX} printable characters, unique per event.")
    slug = event.get("type")
    meter = meters.get(slug) if isinstance(slug, str) else None
    if meter is None:
        bad("type", "Unknown meter." if slug is not None else "Required: a meter's slug.")
    if "specversion" in event and event["specversion"] != "1.0":
        bad("specversion", "Only 1.0.")
    source = event.get("source", "")
    if _text(source, limit=TEXT_MAX) is None:
        bad("source", f"Text of at most {TEXT_MAX} printable characters.")
    subject = event.get("subject", "")
    if _text(subject, limit=TEXT_MAX) is None:
        bad("subject", f"Text of at most {TEXT_MAX} printable characters.")
    when = None
    raw_time = event.get("time")
    if not isinstance(raw_time, str) or len(raw_time) > 40:
        bad("time", "Required: an ISO 8601 timestamp with an offset.")
    else:
        try:
            when = parse_datetime(raw_time)
        except ValueError:  # a well-formed but impossible date (2026-02-30)
            when = None
        if when is None or when.tzinfo is None:
            bad("time", "Must be an ISO 8601 timestamp with an offset (a real date).")
            when = None
        elif when > now + timedelta(seconds=FUTURE_S):
            bad("time", "Must not be in the future.")
            when = None
        elif when < now - timedelta(days=PAST_DAYS):
            bad("time", f"Too old: events are accepted up to {PAST_DAYS} days after the fact.")
            when = None
    quantity = _decimal(event.get("quantity"))
    if quantity is None or quantity == 0:
        bad(
            "quantity",
            "Required: a decimal string or integer above 0 (at most 6 places, at most 10¹²).",
        )
    data = event.get("data", {})
    if not isinstance(data, dict):
        bad("data", "Must be a JSON object.")
    else:
        text = json.dumps(data, ensure_ascii=False)
        if len(text.encode()) > DATA_MAX_BYTES:
            bad("data", f"Too large (at most {DATA_MAX_BYTES} bytes).")
        elif "\\u0000" in text:
            bad("data", "Must not contain NUL characters.")
    if meter is None or when is None or quantity is None or quantity == 0 or not event_id:
        return None
    rate = meter_rate_at(meter=meter, when=when)
    if rate is None:
        bad("type", "The meter had no price at that time.")
        return None
    if errors.get(at) or any(k.startswith(f"{at}.") for k in errors):
        return None
    credits = (quantity * rate.credits_per_unit).quantize(CREDIT_QUANTUM, ROUND_HALF_UP)
    return _Checked(
        index=index,
        event_id=event_id,
        meter=meter,
        rate=rate,
        source=source,
        subject=subject,
        time=when,
        quantity=quantity,
        data=data,
        credits=credits,
        fingerprint=_fingerprint(meter.slug, source, subject, when, quantity, data),
    )


# --- Recording ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    event: UsageEvent
    replayed: bool


def usage_events_record(
    *,
    organization: Organization,
    events,
    api_key: APIKey | None = None,
    user: User | None = None,
    now: datetime | None = None,
) -> list[Recorded]:
    """Record and charge a batch of usage events, all or nothing (see the module docstring).
    Returns one result per event, in the order sent."""
    now = now or timezone.now()
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise ValidationError(
            f"Send 1 to {MAX_EVENTS} events.", errors={"events": [f"1 to {MAX_EVENTS} events."]}
        )
    slugs = {
        e.get("type") for e in events if isinstance(e, dict) and isinstance(e.get("type"), str)
    }
    meters = {m.slug: m for m in Meter.objects.filter(slug__in=slugs, is_active=True)}
    errors: dict[str, list[str]] = {}
    checked = [_check(i, e, meters=meters, now=now, errors=errors) for i, e in enumerate(events)]
    seen: dict[str, _Checked] = {}
    for item in checked:
        if item is None:
            continue
        first = seen.setdefault(item.event_id, item)
        if first is not item and first.fingerprint != item.fingerprint:
            errors.setdefault(f"events.{item.index}.id", []).append(
                f"Repeats the id of event {first.index} with other content."
            )
    if errors:
        count = len({k.split(".")[1] for k in errors})
        raise ValidationError(
            f"{count} event{'s' if count != 1 else ''} of the batch "
            f"{'are' if count != 1 else 'is'} not valid; nothing was recorded.",
            errors=errors,
        )
    with transaction.atomic(durable=True):
        by_id = _record(
            organization=organization, items=list(seen.values()), api_key=api_key, now=now
        )
        new = [r for r in by_id.values() if not r.replayed]
        if new:
            audit_record(
                action="usage_events.recorded",
                organization=organization,
                actor=user,
                actor_api_key=api_key,
                data={
                    "events": len(new),
                    "credits": f"{sum((r.event.credits for r in new), Decimal(0)):f}",
                },
            )
    results = []
    for item in checked:
        recorded = by_id[item.event_id]
        replay = recorded.replayed or seen[item.event_id] is not item  # a repeat in the batch
        results.append(Recorded(event=recorded.event, replayed=replay))
    return results


def _record(
    *, organization: Organization, items: list[_Checked], api_key: APIKey | None, now: datetime
) -> dict[str, Recorded]:
    account = account_lock(organization=organization)
    done: dict[str, Recorded] = {}
    for item in sorted(items, key=lambda i: i.event_id):  # one lock order for every batch
        try:
            with transaction.atomic():
                event = UsageEvent.objects.create(
                    organization=organization,
                    event_id=item.event_id,
                    meter=item.meter,
                    rate=item.rate,
                    source=item.source,
                    subject=item.subject,
                    time=item.time,
                    quantity=item.quantity,
                    data=item.data,
                    credits=item.credits,
                    fingerprint=item.fingerprint,
                    api_key=api_key,
                    created_at=now,
                )
        except IntegrityError:
            existing = UsageEvent.objects.select_related("meter").get(
                organization=organization, event_id=item.event_id
            )
            if existing.fingerprint != item.fingerprint:
                raise IdempotencyConflict(
                    f"Event {item.index}: its id was already used for another event; "
                    "nothing was recorded.",
                    errors={f"events.{item.index}.id": ["Already used for another event."]},
                ) from None
            done[item.event_id] = Recorded(event=existing, replayed=True)
            continue
        if item.credits > 0:
            event.hold = usage_charge(
                account=account,
                amount=item.credits,
                key=f"usage:{item.event_id}",
                api_key=api_key,
                metadata={
                    "meter": item.meter.slug,
                    "model": f"meter:{item.meter.slug}",
                    "usage_event": event.pk,
                    "description": f"{item.meter.name}: {item.quantity.normalize():f} "
                    f"{item.meter.unit}",
                },
                now=now,
            )
            event.save(update_fields=["hold"])
        done[item.event_id] = Recorded(event=event, replayed=False)
    return done
