"""Alert writes: evaluate the rules (open, escalate, de-escalate, touch, resolve) and email staff.

`alerts_evaluate` runs in one transaction. It first locks the rule rows (SELECT … FOR UPDATE),
so two evaluations at once (two beat runs, a manual run) take turns: the second reads the open
alerts the first committed and only touches them. The partial unique constraint
`alert_one_open_per_subject` backs this up in the database.

Emails go out after commit, in a Celery task (`operations.tasks.notify_alerts`, given the alert
ids): on opening and on escalation to critical, never while an alert stays as it is, never on
de-escalation. `notified_at` is cleared when an email is due and set when it is sent, so a
redelivered task sends nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_events_emit_many
from operations.alerts import rules as alert_rules
from operations.models import Alert, AlertRule, AlertState, Severity

logger = logging.getLogger(__name__)


@dataclass
class EvaluationSummary:
    """Alert ids by what the evaluation did to them."""

    opened: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    deescalated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)

    @property
    def to_notify(self) -> list[int]:
        return [*self.opened, *self.escalated]

    def counts(self) -> dict[str, int]:
        return {
            "opened": len(self.opened),
            "escalated": len(self.escalated),
            "deescalated": len(self.deescalated),
            "unchanged": len(self.unchanged),
            "resolved": len(self.resolved),
        }


def alerts_evaluate(*, now: datetime) -> EvaluationSummary:
    """Measure every enabled rule at `now` and bring the open alerts in line with it."""
    summary = EvaluationSummary()
    with transaction.atomic():
        # The lock that serializes concurrent evaluations (see the module docstring).
        rules = list(AlertRule.objects.select_for_update().order_by("id"))
        findings = alert_rules.measure(rules=[r for r in rules if r.enabled], now=now)
        open_alerts = {
            (a.rule_id, a.subject): a for a in Alert.objects.filter(state=AlertState.OPEN)
        }
        new: list[Alert] = []
        changed: list[Alert] = []
        for finding in findings:
            alert = open_alerts.pop((finding.rule.pk, finding.subject), None)
            if alert is None:
                new.append(
                    Alert(
                        rule=finding.rule,
                        subject=finding.subject,
                        severity=finding.severity,
                        state=AlertState.OPEN,
                        value=finding.value,
                        message=finding.message,
                        opened_at=now,
                        last_seen_at=now,
                    )
                )
                continue
            if finding.severity == alert.severity:
                summary.unchanged.append(alert.pk)
            elif finding.severity == Severity.CRITICAL:
                summary.escalated.append(alert.pk)
            else:
                summary.deescalated.append(alert.pk)
            alert.severity = finding.severity
            alert.value = finding.value
            alert.message = finding.message
            alert.last_seen_at = now
            changed.append(alert)
        if new:
            Alert.objects.bulk_create(new)
            summary.opened = [a.pk for a in new]
            webhook_events_emit_many(  # staff webhook endpoints, in this transaction (outbox)
                organization=None,
                type=EventType.ALERT_OPENED,
                payloads=[
                    {
                        "alert": alert.pk,
                        "rule": alert.rule.key,
                        "subject": alert.subject,
                        "severity": alert.severity,
                        "value": str(alert.value),
                        "message": alert.message,
                        "opened_at": alert.opened_at.isoformat(),
                    }
                    for alert in new
                ],
            )
        if changed:
            Alert.objects.bulk_update(changed, ["severity", "value", "message", "last_seen_at"])
        if summary.escalated:  # escalation emails again
            Alert.objects.filter(pk__in=summary.escalated).update(notified_at=None)
        # What is no longer found (fine again, rule disabled, pool or node gone) resolves.
        summary.resolved = sorted(a.pk for a in open_alerts.values())
        if summary.resolved:
            Alert.objects.filter(pk__in=summary.resolved).update(
                state=AlertState.RESOLVED, resolved_at=now
            )
        to_notify = summary.to_notify
        if to_notify:
            from operations.tasks import notify_alerts

            transaction.on_commit(lambda: notify_alerts.delay(to_notify))
    return summary


def staff_emails() -> list[str]:
    return list(
        User.objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
    )


def _email(alert: Alert) -> tuple[str, str]:
    site = settings.SITE_URL.rstrip("/")
    subject = f"[{alert.severity}] {alert.message}"
    body = render_to_string(
        "operations/emails/alert.txt",
        {
            "alert": alert,
            "rule": alert.rule,
            "site_name": settings.SITE_NAME,
            "staff_url": site + reverse("staff:home"),
            "admin_url": site + reverse("admin:operations_alert_change", args=[alert.pk]),
        },
    )
    return subject, body.strip() + "\n"


def alerts_notify(*, alert_ids: list[int], now: datetime | None = None) -> int:
    """Email staff about each still-open alert of `alert_ids` not emailed yet. Returns the number
    of emails sent. Each alert is claimed (`notified_at` set) before its email goes out, so two
    deliveries of the same task send it once; a failed send clears the claim again."""
    now = now or timezone.now()
    recipients = staff_emails()
    if not recipients:
        logger.warning("no staff user with an email to tell about alerts %s", alert_ids)
        return 0
    sent = 0
    for alert_id in sorted(set(alert_ids)):
        claimed = Alert.objects.filter(
            pk=alert_id, state=AlertState.OPEN, notified_at__isnull=True
        ).update(notified_at=now)
        if not claimed:
            continue
        alert = Alert.objects.select_related("rule").get(pk=alert_id)
        subject, body = _email(alert)
        try:
            send_mail(subject=subject, message=body, from_email=None, recipient_list=recipients)
        except Exception:  # a mail outage must not lose the alert: the next escalation retries
            logger.exception("alert email %s failed", alert_id)
            Alert.objects.filter(pk=alert_id, notified_at=now).update(notified_at=None)
            continue
        sent += 1
    return sent
