"""Django admin for credits: read-only ledger pages, the manual adjustment (through the
service, with the acting admin, once per form), releasing holds and settling overage."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import AuditEvent, User
from credits import ledger
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    EntryAllocation,
    EntryKind,
    HoldStatus,
    LedgerEntry,
    OverageRecord,
    OverageStatus,
)
from credits.services import overage_close
from tests.factories import UserFactory, account_of, make_account, make_org

pytestmark = pytest.mark.django_db

REGISTERED = [CreditAccount, CreditGrant, CreditHold, LedgerEntry, OverageRecord]


def url(model, view, *args):
    return reverse(f"admin:credits_{model._meta.model_name}_{view}", args=args)


def adjust_url(account):
    return reverse("admin:credits_creditaccount_adjust", args=[account.pk])


@pytest.fixture
def superuser():
    return User.objects.create_superuser(email="root@example.com", password="pw-root-123")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def account():
    return account_of(make_org(slug="acme", plan="starter"))


@pytest.fixture
def busy_account(account):
    """An account with a grant, a captured hold, an open hold and an overage record."""
    captured = ledger.hold_create(account=account, amount="520", key="job-big")
    ledger.hold_capture(hold=captured)
    ledger.hold_create(account=account, amount="5", key="job-open")
    sub = account.organization.subscription
    overage_close(
        account=account,
        plan=sub.plan,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
    )
    return account


def writes() -> tuple[int, int, int]:
    return LedgerEntry.objects.count(), CreditGrant.objects.count(), AuditEvent.objects.count()


def form_token(response) -> str:
    match = re.search(r'name="token" value="([0-9a-f-]{36})"', response.content.decode())
    assert match, "the adjustment form carries a hidden one-time token"
    return match.group(1)


# --- Registration and read-only pages -----------------------------------------------------------


def test_credits_models_are_registered_but_allocations_are_only_inline():
    for model in REGISTERED:
        assert model in admin.site._registry, model
    assert EntryAllocation not in admin.site._registry


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m.__name__)
def test_changelist_and_search_load(staff_client, busy_account, model):
    assert staff_client.get(url(model, "changelist")).status_code == 200
    assert staff_client.get(url(model, "changelist"), {"q": "acme"}).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m.__name__)
def test_change_page_loads(staff_client, busy_account, model):
    obj = model.objects.first()
    assert staff_client.get(url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (LedgerEntry, {"kind": "capture"}),
        (LedgerEntry, {"account__id__exact": "1"}),
        (CreditGrant, {"expired": "yes"}),
        (CreditGrant, {"expired": "no", "source": "plan"}),
        (CreditHold, {"status": "held"}),
        (OverageRecord, {"status": "open"}),
    ],
)
def test_changelist_filters_work(staff_client, busy_account, model, params):
    response = staff_client.get(url(model, "changelist"), params)
    assert response.status_code == 200


def test_ledger_entry_filter_by_kind_shows_only_that_kind(staff_client, busy_account):
    response = staff_client.get(url(LedgerEntry, "changelist"), {"kind": "hold"})
    shown = {row.kind for row in response.context["cl"].result_list}
    assert shown == {EntryKind.HOLD}


def test_ledger_entries_cannot_be_added_changed_or_deleted(staff_client, busy_account):
    entry = LedgerEntry.objects.filter(account=busy_account).first()
    model_admin = admin.site._registry[LedgerEntry]
    request = type("R", (), {"user": User.objects.get(email="root@example.com")})()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)

    page = staff_client.get(url(LedgerEntry, "change", entry.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    before = (entry.amount, entry.reason)
    response = staff_client.post(
        url(LedgerEntry, "change", entry.pk), {"amount": "1", "reason": "tampered"}
    )
    assert response.status_code == 403
    assert staff_client.post(url(LedgerEntry, "delete", entry.pk), {"post": "yes"}).status_code == (
        403
    )
    assert staff_client.get(url(LedgerEntry, "add")).status_code == 403
    entry.refresh_from_db()
    assert (entry.amount, entry.reason) == before
    changelist = staff_client.get(url(LedgerEntry, "changelist"))
    assert "delete_selected" not in changelist.content.decode()


@pytest.mark.parametrize("model", [CreditAccount, CreditGrant, CreditHold])
def test_balances_grants_and_holds_are_read_only(staff_client, busy_account, model):
    obj = model.objects.first()
    page = staff_client.get(url(model, "change", obj.pk))
    assert 'name="_save"' not in page.content.decode()
    assert staff_client.post(url(model, "change", obj.pk), {"balance": "1"}).status_code == 403
    assert staff_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403


def test_account_page_shows_latest_entries_and_links_to_all_and_to_adjust(
    staff_client, busy_account
):
    page = staff_client.get(url(CreditAccount, "change", busy_account.pk))
    html = page.content.decode()
    assert "Adjust credits" in html
    assert adjust_url(busy_account) in html
    assert f"{url(LedgerEntry, 'changelist')}?account__id__exact={busy_account.pk}" in html
    inline = next(f for f in page.context["inline_admin_formsets"])
    shown = [form.original.pk for form in inline]
    expected = LedgerEntry.objects.filter(account=busy_account).values_list("pk", flat=True)
    assert sorted(shown) == sorted(expected)


def test_account_inline_shows_only_the_latest_entries(staff_client, account):
    for i in range(25):
        ledger.grant_create(account=account, amount="1", source="promo", idempotency_key=f"p{i}")
    page = staff_client.get(url(CreditAccount, "change", account.pk))
    inline = page.context["inline_admin_formsets"][0]
    sequences = sorted(form.original.sequence for form in inline)
    assert sequences == list(range(7, 27))  # 26 entries: the last 20


def test_filtered_entries_changelist_shows_one_accounts_entries(staff_client, busy_account):
    other = make_account(plan="creator", slug="globex")
    response = staff_client.get(
        url(LedgerEntry, "changelist"), {"account__id__exact": busy_account.pk}
    )
    accounts = {row.account_id for row in response.context["cl"].result_list}
    assert accounts == {busy_account.pk}
    assert other.pk not in accounts


# --- Manual adjustment --------------------------------------------------------------------------


def test_adjustment_through_the_form_moves_the_balance_and_records_the_admin(
    staff_client, superuser, account
):
    form = staff_client.get(adjust_url(account))
    assert form.status_code == 200
    token = form_token(form)

    response = staff_client.post(
        adjust_url(account), {"amount": "25.125", "reason": "goodwill credit", "token": token}
    )

    assert response.status_code == 302
    assert response["Location"] == url(CreditAccount, "change", account.pk)
    account.refresh_from_db()
    assert account.balance == D("525.125")
    entry = LedgerEntry.objects.get(account=account, kind=EntryKind.ADJUSTMENT)
    assert (entry.balance_delta, entry.actor, entry.reason) == (
        D("25.125"),
        superuser,
        "goodwill credit",
    )
    audit = AuditEvent.objects.get(action="credits.adjusted")
    assert (audit.actor, audit.organization) == (superuser, account.organization)
    assert audit.data == {"amount": "25.125", "reason": "goodwill credit"}


def test_negative_adjustment_takes_credits_away(staff_client, superuser, account):
    token = form_token(staff_client.get(adjust_url(account)))
    staff_client.post(
        adjust_url(account), {"amount": "-100.5", "reason": "refund reversal", "token": token}
    )
    account.refresh_from_db()
    assert account.balance == D("399.500")
    entry = LedgerEntry.objects.get(account=account, kind=EntryKind.ADJUSTMENT)
    assert (entry.balance_delta, entry.actor) == (D("-100.500"), superuser)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"amount": "1.2345", "reason": "x"}, "amount"),
        ({"amount": "abc", "reason": "x"}, "amount"),
        ({"amount": "0", "reason": "x"}, "amount"),
        ({"amount": "", "reason": "x"}, "amount"),
        ({"amount": "1e30", "reason": "x"}, "amount"),
        ({"amount": "10", "reason": ""}, "reason"),
        ({"amount": "10", "reason": "    "}, "reason"),
    ],
)
def test_bad_adjustment_shows_form_errors_and_writes_nothing(staff_client, account, data, field):
    token = form_token(staff_client.get(adjust_url(account)))
    before = writes()
    response = staff_client.post(adjust_url(account), {**data, "token": token})
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert writes() == before
    account.refresh_from_db()
    assert account.balance == D(500)


def test_adjustment_without_its_token_is_refused(staff_client, account):
    before = writes()
    response = staff_client.post(adjust_url(account), {"amount": "10", "reason": "x"})
    assert response.status_code == 200
    assert "token" in response.context["form"].errors
    assert writes() == before


def test_the_same_form_submitted_twice_adjusts_once(staff_client, account):
    token = form_token(staff_client.get(adjust_url(account)))
    data = {"amount": "10", "reason": "double click", "token": token}
    first = staff_client.post(adjust_url(account), data)
    second = staff_client.post(adjust_url(account), data, follow=True)
    assert first.status_code == 302
    assert second.status_code == 200
    assert "already applied" in second.content.decode()
    account.refresh_from_db()
    assert account.balance == D(510)
    assert LedgerEntry.objects.filter(account=account, kind=EntryKind.ADJUSTMENT).count() == 1
    assert AuditEvent.objects.filter(action="credits.adjusted").count() == 1


def test_each_new_form_is_a_new_adjustment(staff_client, account):
    for _ in range(2):
        token = form_token(staff_client.get(adjust_url(account)))
        staff_client.post(adjust_url(account), {"amount": "10", "reason": "twice", "token": token})
    account.refresh_from_db()
    assert account.balance == D(520)


def test_reused_token_with_another_amount_is_an_error(staff_client, account):
    token = form_token(staff_client.get(adjust_url(account)))
    staff_client.post(adjust_url(account), {"amount": "10", "reason": "a", "token": token})
    before = writes()
    response = staff_client.post(
        adjust_url(account), {"amount": "11", "reason": "a", "token": token}
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert writes() == before


def test_adjust_action_redirects_to_the_form_for_one_account(staff_client, account):
    response = staff_client.post(
        url(CreditAccount, "changelist"),
        {"action": "adjust_credits", "_selected_action": [account.pk]},
    )
    assert response.status_code == 302
    assert response["Location"] == adjust_url(account)


def test_adjust_action_needs_exactly_one_account(staff_client, account):
    other = make_account(plan="creator", slug="globex")
    response = staff_client.post(
        url(CreditAccount, "changelist"),
        {"action": "adjust_credits", "_selected_action": [account.pk, other.pk]},
        follow=True,
    )
    assert "Select exactly one account" in response.content.decode()
    assert not LedgerEntry.objects.filter(kind=EntryKind.ADJUSTMENT).exists()


def test_staff_with_view_permission_only_cannot_adjust(client, account):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_creditaccount"))
    client.force_login(viewer)
    page = client.get(url(CreditAccount, "change", account.pk))
    assert page.status_code == 200
    assert "Adjust credits" not in page.content.decode()
    assert client.get(adjust_url(account)).status_code == 403
    before = writes()
    response = client.post(
        adjust_url(account), {"amount": "10", "reason": "x", "token": form_token_value()}
    )
    assert response.status_code == 403
    assert writes() == before


def form_token_value() -> str:
    import uuid

    return str(uuid.uuid4())


# --- Holds and overage --------------------------------------------------------------------------


def test_release_action_releases_open_holds_as_the_admin_and_skips_resolved_ones(
    staff_client, superuser, busy_account
):
    open_hold = CreditHold.objects.get(key="job-open")
    captured = CreditHold.objects.get(key="job-big")
    response = staff_client.post(
        url(CreditHold, "changelist"),
        {"action": "release_selected_holds", "_selected_action": [open_hold.pk, captured.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Released 1 hold" in html
    assert "Skipped 1 hold" in html
    open_hold.refresh_from_db()
    captured.refresh_from_db()
    assert open_hold.status == HoldStatus.RELEASED
    assert captured.status == HoldStatus.CAPTURED
    release = LedgerEntry.objects.get(hold=open_hold, kind=EntryKind.RELEASE)
    assert (release.actor, release.reason) == (superuser, "released by admin")
    busy_account.refresh_from_db()
    assert busy_account.held == 0
    audit = AuditEvent.objects.get(action="credits.hold_released")
    assert (audit.actor, audit.target_id) == (superuser, str(open_hold.pk))


def test_release_action_twice_releases_once(staff_client, busy_account):
    hold = CreditHold.objects.get(key="job-open")
    data = {"action": "release_selected_holds", "_selected_action": [hold.pk]}
    staff_client.post(url(CreditHold, "changelist"), data)
    staff_client.post(url(CreditHold, "changelist"), data)
    assert LedgerEntry.objects.filter(hold=hold, kind=EntryKind.RELEASE).count() == 1


def test_overage_money_fields_are_read_only_and_status_limited(staff_client, busy_account):
    record = OverageRecord.objects.get(account=busy_account)
    assert record.credits == D(20)
    response = staff_client.post(
        url(OverageRecord, "change", record.pk),
        {
            "status": "invoiced",
            "stripe_invoice_id": "in_123",
            "credits": "1",
            "amount_usd": "0.01",
        },
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.stripe_invoice_id) == (OverageStatus.INVOICED, "in_123")
    assert (record.credits, record.amount_usd) == (D(20), D("0.500000"))
    refused = staff_client.post(
        url(OverageRecord, "change", record.pk), {"status": "paid", "stripe_invoice_id": "in_1"}
    )
    assert refused.status_code == 200  # form error: paid is recorded by the settle action
    record.refresh_from_db()
    assert record.status == OverageStatus.INVOICED


def test_settle_action_posts_the_settlement_entry_once(staff_client, superuser, busy_account):
    record = OverageRecord.objects.get(account=busy_account)
    data = {"action": "settle_selected", "_selected_action": [record.pk]}
    staff_client.post(url(OverageRecord, "changelist"), data)
    staff_client.post(url(OverageRecord, "changelist"), data)
    record.refresh_from_db()
    assert record.status == OverageStatus.PAID
    entry = LedgerEntry.objects.get(account=busy_account, kind=EntryKind.OVERAGE)
    assert (entry.balance_delta, entry.actor) == (D(20), superuser)
    assert record.settlement_entry == entry
    audit = AuditEvent.objects.get(action="overage.settled")
    assert (audit.actor, audit.target_id) == (superuser, str(record.pk))
    assert audit.data == {"credits": "20.000", "entry": entry.pk}


class AuditDown(Exception):
    pass


@pytest.fixture
def audit_fails(monkeypatch):
    from credits.services import staff

    def fail(**kwargs):
        raise AuditDown("audit table unavailable")

    monkeypatch.setattr(staff, "audit_record", fail)  # where the staff actions look it up


def test_release_action_whose_audit_row_fails_releases_nothing(
    staff_client, busy_account, audit_fails
):
    hold = CreditHold.objects.get(key="job-open")
    with pytest.raises(AuditDown):
        staff_client.post(
            url(CreditHold, "changelist"),
            {"action": "release_selected_holds", "_selected_action": [hold.pk]},
        )
    hold.refresh_from_db()
    assert hold.status == HoldStatus.HELD
    assert not LedgerEntry.objects.filter(hold=hold, kind=EntryKind.RELEASE).exists()
    busy_account.refresh_from_db()
    assert busy_account.held == D(5)


def test_settle_action_whose_audit_row_fails_settles_nothing(
    staff_client, busy_account, audit_fails
):
    record = OverageRecord.objects.get(account=busy_account)
    with pytest.raises(AuditDown):
        staff_client.post(
            url(OverageRecord, "changelist"),
            {"action": "settle_selected", "_selected_action": [record.pk]},
        )
    record.refresh_from_db()
    assert (record.status, record.settlement_entry_id) == (OverageStatus.OPEN, None)
    assert not LedgerEntry.objects.filter(account=busy_account, kind=EntryKind.OVERAGE).exists()
