"""Writes of outbound webhooks: endpoints, the outbox (`webhook_event_emit`) and deliveries.

Delivery (docs/webhooks.md): each delivery is tried by a Celery task (`accounts.tasks.
webhook_deliver`, queued after the event's transaction commits) and, should a task be lost, by
the beat sweeper (`webhook_deliveries_due`). A task first *claims* the delivery (attempt number,
lease) in a short transaction, then POSTs outside any transaction, then records the attempt: a
delivered delivery is never sent again, a redelivered task finds nothing to claim. Failures are
retried with exponential backoff for WEBHOOKS_RETRY_WINDOW_H (3 days); an endpoint failing
WEBHOOKS_DISABLE_AFTER_FAILURES attempts in a row over more than WEBHOOKS_DISABLE_AFTER_H hours
is disabled and its organization's owners and admins are emailed. At least once: a receiver
may see an event twice and should deduplicate by its `id`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Membership, Organization, Role, User
from accounts.services import audit_record
from accounts.webhooks import signing
from accounts.webhooks.models import (
    ORGANIZATION_EVENT_TYPES,
    STAFF_EVENT_TYPES,
    DeliveryStatus,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_secret,
)
from accounts.webhooks.urls_check import url_validate
from config.errors import NotFound, PermissionDenied, ValidationError
from config.rows import execute as rows_execute

logger = logging.getLogger(__name__)

USER_AGENT = "GPU-Credits-Webhooks/1"
MAX_ENDPOINTS_PER_ORGANIZATION = 20


# --- Endpoints ---------------------------------------------------------------------------------


def _require_manager(*, organization: Organization | None, actor: User | None) -> None:
    """`actor` None: the organization's API key (trusted like the owner's own program)."""
    if actor is None:
        return
    if organization is None:
        if not (actor.is_active and actor.is_staff):
            raise PermissionDenied("Only staff can manage staff endpoints.")
        return
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None:
        raise NotFound()
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage webhooks.")


def _clean_event_types(event_types, *, staff: bool) -> list[str]:
    allowed = [str(t) for t in (STAFF_EVENT_TYPES if staff else ORGANIZATION_EVENT_TYPES)]
    chosen = sorted({str(t) for t in (event_types or [])})
    if not chosen:
        raise ValidationError(
            "Choose at least one event type.", errors={"event_types": ["Choose at least one."]}
        )
    unknown = [t for t in chosen if t not in allowed]
    if unknown:
        raise ValidationError(
            "Unknown event type.", errors={"event_types": [f"Choose from: {', '.join(allowed)}."]}
        )
    return chosen


def _clean_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > 200:
        raise ValidationError(
            "The description is too long.", errors={"description": ["At most 200 characters."]}
        )
    return description


@transaction.atomic
def webhook_endpoint_create(
    *,
    organization: Organization | None,
    url: str,
    event_types: list[str],
    description: str = "",
    actor: User | None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned to be shown once)."""
    _require_manager(organization=organization, actor=actor)
    url = url_validate(url)
    chosen = _clean_event_types(event_types, staff=organization is None)
    if (
        organization is not None
        and WebhookEndpoint.objects.filter(organization=organization).count()
        >= MAX_ENDPOINTS_PER_ORGANIZATION
    ):
        raise ValidationError(
            f"At most {MAX_ENDPOINTS_PER_ORGANIZATION} endpoints per organization."
        )
    secret = new_secret()
    endpoint = WebhookEndpoint.objects.create(
        organization=organization,
        url=url,
        description=_clean_description(description),
        event_types=chosen,
        secret=secret,
        created_by=actor,
    )
    audit_record(
        action="webhook_endpoint.created",
        organization=organization,
        actor=actor,
        target=endpoint,
        data={"event_types": chosen},
    )
    return endpoint, secret


@transaction.atomic
def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    actor: User | None,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    _require_manager(organization=endpoint.organization, actor=actor)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    changed: list[str] = []
    if url is not None:
        endpoint.url = url_validate(url)
        changed.append("url")
    if event_types is not None:
        endpoint.event_types = _clean_event_types(
            event_types, staff=endpoint.organization_id is None
        )
        changed.append("event_types")
    if description is not None:
        endpoint.description = _clean_description(description)
        changed.append("description")
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        endpoint.disabled_at = None if enabled else timezone.now()
        endpoint.disabled_reason = "" if enabled else "Disabled by a user."
        endpoint.failure_streak = 0
        endpoint.failing_since = None
        changed += ["enabled", "disabled_at", "disabled_reason", "failure_streak", "failing_since"]
    if changed:
        endpoint.save(update_fields=[*changed, "updated_at"])
        audit_record(
            action="webhook_endpoint.updated",
            organization=endpoint.organization,
            actor=actor,
            target=endpoint,
            data={"fields": sorted(set(changed))},
        )
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: User | None) -> None:
    _require_manager(organization=endpoint.organization, actor=actor)
    audit_record(
        action="webhook_endpoint.deleted",
        organization=endpoint.organization,
        actor=actor,
        target=endpoint,
        data={"url": endpoint.url},
    )
    endpoint.delete()


@transaction.atomic
def webhook_endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, actor: User | None, now: datetime | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new secret (returned to be shown once). The previous one stays valid for
    WEBHOOKS_PREVIOUS_SECRET_H hours: events are signed with both meanwhile."""
    _require_manager(organization=endpoint.organization, actor=actor)
    now = now or timezone.now()
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(hours=settings.WEBHOOKS_PREVIOUS_SECRET_H)
    endpoint.secret = secret
    endpoint.save(
        update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"]
    )
    audit_record(
        action="webhook_endpoint.secret_rotated",
        organization=endpoint.organization,
        actor=actor,
        target=endpoint,
    )
    return endpoint, secret


# --- The outbox --------------------------------------------------------------------------------


def _queue(delivery_ids: list[int]) -> None:
    """After commit: one task per delivery. A broker outage loses nothing: the sweeper finds
    the pending deliveries."""
    if not delivery_ids:
        return

    def send() -> None:
        from accounts.tasks import webhook_deliver

        for delivery_id in delivery_ids:
            try:
                webhook_deliver.delay(delivery_id)
            except Exception:  # the broker is down: the beat sweeper delivers it later
                logger.warning("webhook delivery %s not queued; the sweeper will", delivery_id)

    transaction.on_commit(send)


@cache
def _subscribed_sql(staff: bool) -> str:
    quote = connection.ops.quote_name
    org = "IS NULL" if staff else "= %s"
    return (
        f"SELECT id FROM {quote(WebhookEndpoint._meta.db_table)} WHERE enabled "
        f"AND event_types @> %s AND organization_id {org} ORDER BY created_at DESC, id DESC"
    )


def _subscribed(organization: Organization | None, type: str) -> list[int]:
    """`WebhookEndpoint.objects.filter(organization=…, enabled=True, event_types__contains=
    [type]).values_list("pk", flat=True)` as a fixed statement (config.rows): it runs at every
    job's finish (issue 16), nearly always finding none."""
    types = WebhookEndpoint._meta.get_field("event_types").get_db_prep_value([type], connection)
    params = [types] if organization is None else [types, organization.pk]
    return [pk for (pk,) in rows_execute(_subscribed_sql(organization is None), params)]


def webhook_events_emit_many(
    *,
    organization: Organization | None,
    type: str,
    payloads: list[dict],
    now: datetime | None = None,
) -> list[WebhookEvent]:
    """Several events of one type at once (e.g. the alerts one evaluation opens), in the
    caller's transaction: one query when no endpoint wants them, three when some do."""
    if type not in EventType.values:
        raise ValueError(f"unknown webhook event type {type!r}")
    if not payloads:
        return []
    endpoints = _subscribed(organization, type)
    if not endpoints:
        return []
    now = now or timezone.now()
    events = WebhookEvent.objects.bulk_create(
        WebhookEvent(
            organization=organization,
            type=type,
            payload=json.loads(json.dumps(payload, default=str)),
            created_at=now,
        )
        for payload in payloads
    )
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(event=event, endpoint_id=pk, next_attempt_at=now, created_at=now)
        for event in events
        for pk in endpoints
    )
    _queue([d.pk for d in deliveries])
    return events


def webhook_event_emit(
    *,
    organization: Organization | None,
    type: str,
    payload: dict,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> WebhookEvent | None:
    """Write an event and a pending delivery for each enabled endpoint subscribed to it, in the
    caller's transaction (the outbox); the deliveries are queued once it commits. `organization`
    None: a staff event (staff endpoints). Returns None when no endpoint wants it (nothing is
    written) or when `dedupe_key` was already emitted."""
    if type not in EventType.values:
        raise ValueError(f"unknown webhook event type {type!r}")
    endpoints = _subscribed(organization, type)
    if not endpoints:
        return None
    now = now or timezone.now()
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                organization=organization,
                type=type,
                payload=json.loads(json.dumps(payload, default=str)),
                dedupe_key=dedupe_key,
                created_at=now,
            )
    except IntegrityError:
        if dedupe_key and WebhookEvent.objects.filter(dedupe_key=dedupe_key).exists():
            return None
        raise
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(event=event, endpoint_id=pk, next_attempt_at=now, created_at=now)
        for pk in endpoints
    )
    _queue([d.pk for d in deliveries])
    return event


@transaction.atomic
def webhook_test_send(
    *, endpoint: WebhookEndpoint, actor: User | None, now: datetime | None = None
) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint only (even one not subscribed to anything)."""
    _require_manager(organization=endpoint.organization, actor=actor)
    if not endpoint.enabled:
        raise ValidationError("Enable the endpoint first.")
    now = now or timezone.now()
    event = WebhookEvent.objects.create(
        organization=endpoint.organization,
        type=EventType.TEST,
        payload={"message": "A test event.", "endpoint": endpoint.pk},
        created_at=now,
    )
    delivery = WebhookDelivery.objects.create(
        event=event, endpoint=endpoint, next_attempt_at=now, created_at=now
    )
    _queue([delivery.pk])
    return delivery


@transaction.atomic
def webhook_delivery_resend(
    *, delivery: WebhookDelivery, actor: User | None, now: datetime | None = None
) -> WebhookDelivery:
    """Send an event again to the same endpoint: a new delivery of the same event (same id)."""
    endpoint = delivery.endpoint
    _require_manager(organization=endpoint.organization, actor=actor)
    if not endpoint.enabled:
        raise ValidationError("Enable the endpoint first.")
    now = now or timezone.now()
    again = WebhookDelivery.objects.create(
        event_id=delivery.event_id,
        endpoint=endpoint,
        next_attempt_at=now,
        created_at=now,
        resend_of=delivery,
    )
    _queue([again.pk])
    return again


# --- Delivering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    number: int
    url: str
    secrets: list[str]
    body: bytes


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff after the `attempt`-th failure: base·2^(n-1), capped."""
    base = settings.WEBHOOKS_RETRY_BASE_S
    cap = settings.WEBHOOKS_RETRY_MAX_DELAY_S
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))


def _claim(delivery_id: int, now: datetime) -> _Claim | None:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event__organization", "endpoint")
            .filter(
                pk=delivery_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=now,
                endpoint__enabled=True,
            )
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts = F("attempts") + 1
        # The lease: another task (a redelivery, the sweeper) leaves it alone meanwhile.
        delivery.next_attempt_at = now + timedelta(
            seconds=settings.WEBHOOKS_TIMEOUT_S + settings.WEBHOOKS_CLAIM_LEASE_S
        )
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        delivery.refresh_from_db(fields=["attempts"])
        body = json.dumps(delivery.event.body(), separators=(",", ":"), sort_keys=True)
        return _Claim(
            delivery_id=delivery.pk,
            number=delivery.attempts,
            url=delivery.endpoint.url,
            secrets=delivery.endpoint.signing_secrets(now),
            body=body.encode("utf-8"),
        )


def _post(claim: _Claim) -> _Outcome:
    started = time.monotonic()

    def outcome(status_code: int | None, error: str) -> _Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return _Outcome(status_code=status_code, error=error[:500], duration_ms=elapsed)

    try:
        # Checked again on what the host name resolves to now (it may have changed).
        url_validate(claim.url)
    except ValidationError as exc:
        return outcome(None, exc.detail)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.header_value(
            claim.body, secrets=claim.secrets, timestamp=int(time.time())
        ),
    }
    try:
        response = requests.post(
            claim.url,
            data=claim.body,
            headers=headers,
            timeout=settings.WEBHOOKS_TIMEOUT_S,
            allow_redirects=False,
        )
        response.close()
    except requests.Timeout:
        return outcome(None, "The receiver did not answer in time.")
    except requests.RequestException as exc:
        return outcome(None, f"Connection failed: {type(exc).__name__}.")
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return outcome(response.status_code, error)


def _owner_emails(organization: Organization | None) -> list[str]:
    if organization is None:
        users = User.objects.filter(is_staff=True, is_active=True)
    else:
        users = User.objects.filter(
            is_active=True,
            memberships__organization=organization,
            memberships__role__in=[Role.OWNER, Role.ADMIN],
        )
    return sorted(set(users.exclude(email="").values_list("email", flat=True)))


def _disable_for_failures(endpoint: WebhookEndpoint, now: datetime) -> None:
    """In the caller's transaction, the endpoint locked."""
    reason = (
        f"Disabled after {endpoint.failure_streak} failed deliveries in a row since "
        f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC."
    )
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = reason
    endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason", "updated_at"])
    audit_record(
        action="webhook_endpoint.disabled",
        organization=endpoint.organization,
        target=endpoint,
        data={"failure_streak": endpoint.failure_streak},
    )
    recipients = _owner_emails(endpoint.organization)
    if not recipients:
        return
    where = endpoint.organization.name if endpoint.organization_id else "staff"
    page = settings.SITE_URL.rstrip("/") + "/webhooks/"
    message = (
        f"The webhook endpoint {endpoint.url} ({where}) kept failing and has been disabled.\n"
        f"{reason}\n\n"
        f"Fix the receiver, then enable the endpoint again and resend what it missed: {page}\n"
    )

    def send() -> None:
        send_mail(
            subject=f"Webhook endpoint disabled on {settings.SITE_NAME}",
            message=message,
            from_email=None,
            recipient_list=recipients,
            fail_silently=True,
        )

    transaction.on_commit(send)


def _record(claim: _Claim, result: _Outcome, now: datetime) -> str:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .select_related("event")
            .get(pk=claim.delivery_id)
        )
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        delivery.last_status_code = result.status_code
        delivery.last_error = result.error
        if result.ok:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            if endpoint.failure_streak or endpoint.failing_since:
                endpoint.failure_streak = 0
                endpoint.failing_since = None
                endpoint.save(update_fields=["failure_streak", "failing_since", "updated_at"])
            outcome = "delivered"
        else:
            retry_at = now + retry_delay(claim.number)
            window_end = delivery.event.created_at + timedelta(
                hours=settings.WEBHOOKS_RETRY_WINDOW_H
            )
            if retry_at > window_end:
                delivery.status = DeliveryStatus.FAILED
                delivery.next_attempt_at = None
                outcome = "gave_up"
            else:
                delivery.next_attempt_at = retry_at
                outcome = "retry"
            endpoint.failure_streak += 1
            endpoint.failing_since = endpoint.failing_since or now
            endpoint.save(update_fields=["failure_streak", "failing_since", "updated_at"])
            failing_for = now - endpoint.failing_since
            if (
                endpoint.enabled
                and endpoint.failure_streak >= settings.WEBHOOKS_DISABLE_AFTER_FAILURES
                and failing_for >= timedelta(hours=settings.WEBHOOKS_DISABLE_AFTER_H)
            ):
                _disable_for_failures(endpoint, now)
                outcome = "disabled"
        delivery.save(
            update_fields=[
                "status",
                "delivered_at",
                "next_attempt_at",
                "last_status_code",
                "last_error",
            ]
        )
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=claim.number,
            at=now,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            next_attempt_at=delivery.next_attempt_at,
        )
    return outcome


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str:
    """Try one delivery once if it is due. Returns `skipped` (delivered, given up, not due, or
    being tried elsewhere), `delivered`, `retry`, `gave_up` or `disabled`."""
    now = now or timezone.now()
    claim = _claim(delivery_id, now)
    if claim is None:
        return "skipped"
    result = _post(claim)
    outcome = _record(claim, result, now)
    if outcome == "retry":
        logger.info(
            "webhook delivery %s attempt %s failed (%s); retrying",
            delivery_id,
            claim.number,
            result.error,
        )
    return outcome


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """The beat sweeper: ids of pending deliveries due now on enabled endpoints (their task
    may have been lost, or their retry time has come), oldest first."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
