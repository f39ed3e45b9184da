"""Stripe webhooks: verify, store, then process — each event id exactly once.

1. **Verify** the `Stripe-Signature` header with STRIPE_WEBHOOK_SECRET (HMAC-SHA256 of
   ``"<t>.<body>"``, timestamp within STRIPE_WEBHOOK_TOLERANCE_S).
2. **Store** the event before anything else, in its own (autocommit) write, once per Stripe
   event id (a redelivery bumps `deliveries`). A bad signature or a malformed payload (not a
   JSON object, nested too deep, a NUL or a lone surrogate anywhere: see
   `config.strict_json.loads_strict`) is answered 400 and stores nothing but a bounded trace:
   the hour's counter in `StripeWebhookRefusal` and, for the first SAMPLES_PER_HOUR refusals of
   the hour, a sample of at most SAMPLE_CHARS characters of the body. `refusals_prune` (beat)
   deletes the trace, and the `invalid` events stored before it existed, after
   REFUSAL_RETENTION.
3. **Process** in a transaction of its own that starts by locking the event row
   (SELECT … FOR UPDATE): concurrent deliveries of one event queue on that lock and the later
   ones find it processed. The handler runs in a savepoint: if it fails, its writes are rolled
   back and the failure (status `failed`, `error`, `attempts`) is committed, and the answer is
   500 so Stripe retries; the `billing_retry_failed_events` beat task retries too (events that
   arrived before the one they depend on). Unknown event types are stored and `ignored` (200).

The HTTP view is not atomic (ATOMIC_REQUESTS is off): only the processing transaction is.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.services import audit_record
from config.errors import ServiceError
from config.strict_json import HostileJSON, loads_strict
from credits.billing import gateway as gw
from credits.billing import handlers
from credits.billing.errors import InvalidSignature, RetryLater, Unprocessable
from credits.billing.models import StripeEvent, StripeEventStatus, StripeWebhookRefusal
from credits.billing.stripe_objects import ts

logger = logging.getLogger(__name__)

SAMPLE_CHARS = 1000
SAMPLES_PER_HOUR = 20
REFUSAL_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict = field(default_factory=dict)
    event: StripeEvent | None = None


# --- Receive ----------------------------------------------------------------------------------


def _parse(body: bytes) -> tuple[dict | None, str]:
    try:
        payload = loads_strict(body)
    except HostileJSON as exc:
        return None, f"Malformed payload: {exc}"
    if not isinstance(payload, dict):
        return None, "Malformed payload: not a JSON object."
    data = payload.get("data")
    if not (
        isinstance(payload.get("id"), str)
        and payload["id"]
        and isinstance(payload.get("type"), str)
        and payload["type"]
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
        and payload.get("object", "event") == "event"
    ):
        return payload, "Malformed payload: a Stripe event needs id, type and data.object."
    return payload, ""


def _printable(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, without what PostgreSQL can't store."""
    return text[:limit].replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _trace_refusal(
    *, body: bytes, payload: dict | None, signature_valid: bool, error: str, now=None
) -> None:
    """Count a refused delivery in its hour's row; keep a truncated sample of the first
    SAMPLES_PER_HOUR of the hour. One statement: concurrent refusals add up."""
    now = now or timezone.now()
    event_type = payload.get("type") if isinstance(payload, dict) else ""
    sample = {
        "at": now.isoformat(),
        "error": _printable(error, 300),
        "signature_valid": signature_valid,
        "type": _printable(event_type, 100) if isinstance(event_type, str) else "",
        "bytes": len(body),
        "body": _printable(body[: SAMPLE_CHARS * 4].decode("utf-8", "replace"), SAMPLE_CHARS),
    }
    table = StripeWebhookRefusal._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} AS r (hour, count, samples, last_at)
            VALUES (%s, 1, jsonb_build_array(%s::jsonb), %s)
            ON CONFLICT (hour) DO UPDATE SET
                count = r.count + 1,
                last_at = GREATEST(r.last_at, EXCLUDED.last_at),
                samples = CASE
                    WHEN jsonb_array_length(r.samples) < %s THEN r.samples || EXCLUDED.samples
                    ELSE r.samples
                END
            """,
            [
                now.replace(minute=0, second=0, microsecond=0),
                json.dumps(sample),
                now,
                SAMPLES_PER_HOUR,
            ],
        )


def refusals_prune(*, now=None) -> int:
    """Beat task: delete the refusal trace older than REFUSAL_RETENTION, and the `invalid`
    events (with their raw bodies) stored before refusals were only traced."""
    cutoff = (now or timezone.now()) - REFUSAL_RETENTION
    traces, _ = StripeWebhookRefusal.objects.filter(hour__lt=cutoff).delete()
    legacy, _ = StripeEvent.objects.filter(
        status=StripeEventStatus.INVALID, received_at__lt=cutoff
    ).delete()
    return traces + legacy


def _store(payload: dict) -> StripeEvent:
    created_at = None
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        created_at = ts(payload.get("created"))
    event, created = StripeEvent.objects.get_or_create(
        event_id=payload["id"][:255],
        defaults={
            "type": payload["type"][:100],
            "livemode": bool(payload.get("livemode")),
            "api_version": str(payload.get("api_version") or "")[:64],
            "stripe_created_at": created_at,
            "payload": payload,
            "signature_valid": True,
        },
    )
    if not created:
        StripeEvent.objects.filter(pk=event.pk).update(deliveries=F("deliveries") + 1)
    return event


def receive(*, body: bytes, signature: str | None) -> Outcome:
    """One webhook delivery: verify, store, process. Returns the HTTP answer."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    signature_error = ""
    try:
        if not secret:
            raise InvalidSignature("STRIPE_WEBHOOK_SECRET is not configured.")
        gw.verify_webhook_signature(
            payload=body,
            header=signature,
            secret=secret,
            tolerance_s=settings.STRIPE_WEBHOOK_TOLERANCE_S,
        )
    except InvalidSignature as exc:
        signature_error = f"Invalid signature: {exc.detail}"
    # An unverified body is not parsed: it is only counted, and sampled.
    payload, parse_error = (None, "") if signature_error else _parse(body)
    if signature_error or parse_error:
        error = signature_error or parse_error
        _trace_refusal(body=body, payload=payload, signature_valid=not signature_error, error=error)
        logger.warning("stripe webhook refused (%d bytes): %s", len(body), error[:300])
        return Outcome(400, {"error": error})
    event = _store(payload)
    return process(event_pk=event.pk)


# --- Process ----------------------------------------------------------------------------------


def _answer(event: StripeEvent, *, duplicate: bool = False) -> Outcome:
    ok = event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED)
    body = {"event": event.event_id, "status": event.status}
    if event.note:
        body["note"] = event.note
    if event.error:
        body["error"] = event.error
    if duplicate:
        body["duplicate"] = True
    return Outcome(200 if ok else 500, body, event)


def process(*, event_pk: int, include_ignored: bool = False) -> Outcome:
    """Process a stored event unless it was already (processed or ignored; with
    `include_ignored`, an ignored one is processed again — e.g. a type handled since)."""
    now = timezone.now()
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_pk)
        done = (StripeEventStatus.PROCESSED,)
        if not include_ignored:
            done += (StripeEventStatus.IGNORED,)
        if event.status in done:
            return _answer(event, duplicate=True)
        if event.status == StripeEventStatus.INVALID:
            return Outcome(400, {"error": event.error, "stored": event.pk}, event)
        event.attempts += 1
        event.last_attempt_at = now
        handler = handlers.HANDLERS.get(event.type)
        if handler is None:
            event.status = StripeEventStatus.IGNORED
            event.note = f"No handler for event type {event.type!r}: stored and ignored."
            event.error = ""
            event.processed_at = now
            event.save()
            return _answer(event)
        created = event.stripe_created_at or event.received_at
        ctx = handlers.Context(event=event, payload=event.payload, created=created, now=now)
        try:
            with transaction.atomic():
                result = handler(ctx)
        except RetryLater as exc:
            event.status, event.error = StripeEventStatus.FAILED, f"Waiting: {exc}"
        except Unprocessable as exc:
            event.status, event.error = StripeEventStatus.FAILED, str(exc)
        except ServiceError as exc:
            event.status = StripeEventStatus.FAILED
            event.error = f"{type(exc).__name__}: {exc.detail}"
        except Exception as exc:
            logger.exception("stripe event %s (%s) failed", event.event_id, event.type)
            event.status, event.error = StripeEventStatus.FAILED, f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(result, str):
                result = handlers.Result(result)
            event.status = (
                StripeEventStatus.IGNORED if result.ignored else StripeEventStatus.PROCESSED
            )
            event.note = result.note[:500]
            event.error = ""
            event.processed_at = now
        if ctx.organization is not None:
            event.organization = ctx.organization
        event.save()
        if event.status == StripeEventStatus.FAILED:
            logger.warning("stripe event %s failed: %s", event.event_id, event.error)
        return _answer(event)


def retry_failed(*, now=None, limit: int = 200) -> int:
    """Beat task: process again the events that failed (with exponential backoff: 1, 2, 4 …
    minutes, at most 6 h apart) or were left unprocessed by a crash, within
    BILLING_EVENT_RETRY_MAX_ATTEMPTS attempts and BILLING_EVENT_RETRY_MAX_AGE_H hours."""
    now = now or timezone.now()
    candidates = StripeEvent.objects.filter(
        Q(status=StripeEventStatus.FAILED)
        | Q(status=StripeEventStatus.RECEIVED, received_at__lte=now - timedelta(minutes=2)),
        received_at__gte=now - timedelta(hours=settings.BILLING_EVENT_RETRY_MAX_AGE_H),
        attempts__lt=settings.BILLING_EVENT_RETRY_MAX_ATTEMPTS,
    ).order_by("stripe_created_at", "received_at", "pk")[:limit]
    done = 0
    for event in candidates:
        if event.last_attempt_at is not None:
            wait = timedelta(minutes=min(2 ** max(event.attempts - 1, 0), 360))
            if event.last_attempt_at + wait > now:
                continue
        if process(event_pk=event.pk).status_code == 200:
            done += 1
    return done


def reprocess(*, event: StripeEvent, actor=None) -> Outcome:
    """Staff: process an event again (failed, received, or ignored). Processed events are
    never applied twice."""
    outcome = process(event_pk=event.pk, include_ignored=True)
    audit_record(
        action="billing.event_reprocessed",
        organization=event.organization,
        actor=actor,
        target=event,
        data={"event": event.event_id, "status": outcome.body.get("status")},
    )
    return outcome
