"""The spend-velocity pause (issue 15) on a real database: a paid organization whose spend in
the last hour passes N× its trailing 7-day hourly average (and the floor) is refused with
`limit: velocity`; the beat records the pause (one set-based statement), it stays after the
hour until an owner (billing page) or staff (admin action) confirms; a small organization is
never paused below the floor."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Role
from config.errors import PermissionDenied, QuotaExceeded
from credits import ledger
from credits import services as credit_services
from credits.selectors import ledger_drift
from credits.velocity import services as velocity
from credits.velocity.models import VelocityPause
from tests.factories import account_of, add_member, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _velocity_settings(settings):
    settings.CREDITS_VELOCITY_MULTIPLIER = 10
    settings.CREDITS_VELOCITY_FLOOR_CREDITS = 50


@pytest.fixture
def acme():
    org = make_org(slug="acme", plan="studio")
    credit_services.organization_grant(
        organization=org, amount="100000", source="adjustment", reason="t", idempotency_key="g"
    )
    return org


def history(org, *, per_hour: D, now) -> None:
    """A week of steady spend: `per_hour` × 168 captured two days ago (average = per_hour)."""
    hold = ledger.hold_create(
        account=account_of(org), amount=per_hour * 168, key="history", now=now - timedelta(days=2)
    )
    ledger.hold_capture(hold=hold)


def authorize(org, amount, key, now):
    return credit_services.spend_authorize(organization=org, amount=amount, key=key, now=now)


def test_once_the_last_hour_passes_n_times_the_average_the_next_job_is_refused(acme):
    now = timezone.now()
    history(acme, per_hour=D(20), now=now)  # threshold: 10 × 20 = 200 an hour
    authorize(acme, "120", "a", now)
    authorize(acme, "90", "b", now)  # 120 ≤ 200: accepted, the hour is now at 210
    with pytest.raises(QuotaExceeded) as refused:
        authorize(acme, "1", "c", now)
    assert refused.value.extra["limit"] == "velocity"
    assert refused.value.extra["limit_value"] == "200.000"
    assert refused.value.extra["used"] == "210.000"
    assert "paused" in refused.value.detail
    assert ledger_drift() == []


def test_a_small_organization_is_not_paused_below_the_floor(acme):
    now = timezone.now()  # no history at all: the floor (50) is the threshold
    authorize(acme, "30", "a", now)
    authorize(acme, "20", "b", now)  # 50: at the floor, not past it
    authorize(acme, "5", "c", now)
    assert velocity.velocity_watch(now=now) == [acme.pk]  # 55 > 50
    with pytest.raises(QuotaExceeded):
        authorize(acme, "1", "d", now)


def test_released_holds_do_not_count_as_spend(acme):
    now = timezone.now()
    for i in range(5):
        hold = authorize(acme, "40", f"r{i}", now)
        ledger.hold_release(hold=hold, reason="failed")
    authorize(acme, "45", "ok", now)


def test_the_pause_stays_after_the_hour_until_an_owner_confirms(acme):
    owner = acme.memberships.get().user
    now = timezone.now()
    history(acme, per_hour=D(10), now=now)  # threshold 100
    authorize(acme, "99", "a", now)
    assert velocity.velocity_watch(now=now) == []  # 99 ≤ 100
    authorize(acme, "99", "spike", now)  # the hour: 198
    assert velocity.velocity_watch(now=now) == [acme.pk]
    assert velocity.velocity_watch(now=now) == []  # idempotent
    state = VelocityPause.objects.get(organization=acme)
    assert state.paused_at == now and state.last_hour_credits == D(198)
    assert AuditEvent.objects.filter(action="credits.velocity_paused").count() == 1

    later = now + timedelta(hours=3)  # the hour has passed: still paused
    with pytest.raises(QuotaExceeded) as refused:
        authorize(acme, "1", "later", later)
    assert refused.value.extra["limit"] == "velocity"

    member = add_member(acme, role=Role.MEMBER).user
    with pytest.raises(PermissionDenied):
        velocity.velocity_resume(organization=acme, actor=member)
    velocity.velocity_resume(organization=acme, actor=owner, now=later)
    authorize(acme, "150", "after", later)  # confirmed: the check steps aside for a day
    assert velocity.velocity_watch(now=later) == []
    assert AuditEvent.objects.filter(action="credits.velocity_resumed").count() == 1


def test_the_watch_takes_as_many_queries_for_five_organizations_as_for_one(acme):
    now = timezone.now()

    def spike(org, key):
        credit_services.organization_grant(
            organization=org, amount="100", source="adjustment", reason="t", idempotency_key=key
        )
        authorize(org, "60", key, now)

    spike(acme, "s0")
    with CaptureQueriesContext(connection) as one:
        assert velocity.velocity_watch(now=now) == [acme.pk]
    others = [make_org(slug=f"busy{i}") for i in range(5)]
    for i, org in enumerate(others):
        spike(org, f"s{i + 1}")
    with CaptureQueriesContext(connection) as five:
        assert sorted(velocity.velocity_watch(now=now)) == sorted(o.pk for o in others)
    inserts = [q for q in five.captured_queries if "INSERT INTO credits_velocitypause" in q["sql"]]
    assert len(inserts) == 1
    audits = [q for q in five.captured_queries if "accounts_auditevent" in q["sql"]]
    assert len(five.captured_queries) - len(audits) == len(one.captured_queries) - 1


def test_the_billing_page_shows_the_pause_and_an_owner_resumes_it(client, acme):
    owner = acme.memberships.get().user
    now = timezone.now()
    authorize(acme, "60", "spike", now)
    velocity.velocity_watch(now=now)
    client.force_login(owner)
    page = client.get(reverse("credits:billing")).content.decode()
    assert 'data-testid="velocity-paused"' in page
    response = client.post(reverse("credits:billing_velocity_resume"), follow=True)
    assert "Paid generation resumed" in response.content.decode()
    assert VelocityPause.objects.get(organization=acme).paused_at is None
    assert 'data-testid="velocity-paused"' not in response.content.decode()


def test_a_member_sees_the_pause_but_cannot_resume(client, acme):
    now = timezone.now()
    authorize(acme, "60", "spike", now)
    velocity.velocity_watch(now=now)
    client.force_login(add_member(acme, role=Role.MEMBER).user)
    page = client.get(reverse("credits:billing")).content.decode()
    assert "Ask an owner or admin" in page
    assert client.post(reverse("credits:billing_velocity_resume")).status_code == 403
    assert VelocityPause.objects.get(organization=acme).paused_at is not None


def test_staff_resume_from_the_admin(admin_client, acme):
    now = timezone.now()
    authorize(acme, "60", "spike", now)
    velocity.velocity_watch(now=now)
    state = VelocityPause.objects.get(organization=acme)
    response = admin_client.post(
        reverse("admin:credits_velocitypause_changelist"),
        {"action": "resume", "_selected_action": [state.pk]},
    )
    assert response.status_code == 302
    state.refresh_from_db()
    assert state.paused_at is None and state.confirmed_by is not None
