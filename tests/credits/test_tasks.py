"""The credits beat tasks do their job once: a second run finds nothing to do."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.conf import settings
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Plan
from credits import ledger, tasks
from credits.models import CreditGrant, CreditHold, EntryKind, HoldStatus, LedgerEntry
from tests.factories import account_of, ensure_default_plans, make_account

pytestmark = pytest.mark.django_db


def run(task) -> int:
    return task.apply().get()


def test_tasks_are_late_acked():
    for task in (tasks.expire_grants, tasks.release_stale_holds, tasks.renew_subscriptions):
        assert task.acks_late is True


def test_beat_schedule_runs_each_task_at_its_interval():
    schedule = {
        e["task"]: e["schedule"]
        for e in settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"].startswith("credits.")
    }
    assert schedule == {
        "credits.tasks.expire_grants": 300.0,
        "credits.tasks.release_stale_holds": 60.0,
        "credits.tasks.renew_subscriptions": 300.0,
        # Billing (credits.billing): see tests/billing.
        "credits.tasks.billing_retry_failed_events": 120.0,
        "credits.tasks.billing_invoice_overages": 600.0,
        "credits.tasks.billing_balance_watch": 60.0,
        "credits.tasks.billing_downgrade_past_due": 3600.0,
        "credits.tasks.billing_prune_webhook_refusals": 3600.0,
        # Spend velocity pause (credits.velocity): tests/credits/test_velocity.py.
        "credits.tasks.credits_velocity_watch": 60.0,
        "credits.tasks.credits_trials_end_due": 300.0,
    }
    from config.celery_app import app

    app.loader.import_default_modules()
    for name in schedule:
        assert name in app.tasks, name


def test_expire_grants_expires_what_is_due_once():
    account = make_account(credits="0")
    past = timezone.now() - timedelta(days=2)
    due = ledger.grant_create(
        account=account,
        amount="30",
        source="promo",
        idempotency_key="promo-old",
        expires_at=past + timedelta(days=1),
        now=past,
    )
    later = ledger.grant_create(
        account=account,
        amount="5",
        source="promo",
        idempotency_key="promo-new",
        expires_at=timezone.now() + timedelta(days=1),
    )

    assert run(tasks.expire_grants) == 1
    entries = LedgerEntry.objects.count()
    assert run(tasks.expire_grants) == 0

    assert LedgerEntry.objects.count() == entries
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.remaining, later.remaining) == (0, D(5))
    expiry = LedgerEntry.objects.get(account=account, kind=EntryKind.EXPIRY)
    assert (expiry.grant_id, expiry.balance_delta) == (due.pk, D(-30))
    account.refresh_from_db()
    assert account.balance == D(5)


def test_release_stale_holds_releases_holds_past_their_expiry_once():
    account = make_account(credits="100")
    past = timezone.now() - timedelta(hours=5)
    stale = ledger.hold_create(
        account=account, amount="40", key="stuck", now=past, expires_at=past + timedelta(hours=2)
    )
    fresh = ledger.hold_create(account=account, amount="10", key="running")

    assert run(tasks.release_stale_holds) == 1
    entries = LedgerEntry.objects.count()
    assert run(tasks.release_stale_holds) == 0

    assert LedgerEntry.objects.count() == entries
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == (HoldStatus.EXPIRED, HoldStatus.HELD)
    account.refresh_from_db()
    assert (account.balance, account.held) == (D(100), D(10))


def test_renew_subscriptions_opens_the_new_period_once():
    ensure_default_plans()
    started = timezone.now() - timedelta(days=40)
    org = account_services.organization_create(
        name="Late", slug="late", plan=Plan.objects.get(slug="starter"), now=started
    )
    account = account_of(org)
    old_end = org.subscription.current_period_end
    assert old_end < timezone.now()

    assert run(tasks.renew_subscriptions) == 1
    grants = CreditGrant.objects.count()
    entries = LedgerEntry.objects.count()
    assert run(tasks.renew_subscriptions) == 0

    assert (CreditGrant.objects.count(), LedgerEntry.objects.count()) == (grants, entries)
    org.subscription.refresh_from_db()
    assert org.subscription.current_period_start == old_end
    assert org.subscription.current_period_end > timezone.now()
    plan_grants = CreditGrant.objects.filter(account=account, source="plan").order_by("id")
    assert [g.remaining for g in plan_grants] == [0, D(500)]
    assert plan_grants[1].expires_at == org.subscription.current_period_end
    account.refresh_from_db()
    assert account.balance == D(500)


def test_tasks_with_nothing_due_do_nothing():
    make_account(credits="10")
    before = (LedgerEntry.objects.count(), CreditHold.objects.count())
    assert run(tasks.expire_grants) == 0
    assert run(tasks.release_stale_holds) == 0
    assert run(tasks.renew_subscriptions) == 0
    assert (LedgerEntry.objects.count(), CreditHold.objects.count()) == before
