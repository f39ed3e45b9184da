"""The billing page (/credits/billing/): what owners and members see, what each POST does
through the billing services (the recording fake gateway stands in for Stripe Checkout and the
portal), form validation, the site-wide past-due banner, Stripe unconfigured or unreachable."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Plan, SubscriptionStatus
from credits import ledger
from credits.billing.models import AutoTopUp, CreditPack, LowBalanceAlert, Purchase, StripeCustomer
from credits.billing.subscriptions import activate
from tests.billing.conftest import PRICES
from tests.billing.fake_gateway import unavailable
from tests.factories import UserFactory, account_of, add_member, make_org

pytestmark = pytest.mark.django_db

BILLING = "/credits/billing/"
POSTS = [
    ("credits:billing_plan", {"plan": "starter"}),
    ("credits:billing_pack", {"pack": "credits-500"}),
    ("credits:billing_portal", {}),
    ("credits:billing_cancel", {}),
    ("credits:billing_resume", {}),
    (
        "credits:billing_auto_top_up",
        {"topup-enabled": "on", "topup-threshold_credits": "100", "topup-pack": "credits-500"},
    ),
    ("credits:billing_low_balance", {"alert-enabled": "on", "alert-threshold_credits": "50"}),
]


def _login(client, user):
    client.force_login(user)
    client.get(reverse("dashboard"))  # sets the active organization
    return client


def _body(response) -> str:
    return response.content.decode()


def _text(response) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", _body(response), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def _button(body: str, text: str) -> str:
    """The <button> whose label (its text or aria-label) is `text`."""
    label = re.escape(text)
    match = re.search(r"<button[^>]*>\s*" + label + r"\s*</button>", body) or re.search(
        r'<button[^>]*aria-label="' + label + r'"[^>]*>', body
    )
    assert match, f"no button {text!r}"
    return match.group(0)


@pytest.fixture
def owner():
    return UserFactory(email="owner@acme.test")


@pytest.fixture
def acme(catalog, owner):
    return make_org(slug="acme", name="Acme", plan="free", owner=owner)


@pytest.fixture
def member(acme):
    return add_member(acme).user


@pytest.fixture
def subscribed(acme, fake_gateway):
    """Acme on Starter through a Stripe subscription the fake gateway knows."""
    StripeCustomer.objects.create(organization=acme, stripe_customer_id="cus_acme")
    activate(
        organization=acme,
        plan=Plan.objects.get(slug="starter"),
        customer_id="cus_acme",
        subscription_id="sub_acme",
        period_start=acme.subscription.current_period_start,
        via="test",
    )
    fake_gateway.subscriptions["sub_acme"] = fake_gateway._subscription(
        "sub_acme", PRICES["starter"], "cus_acme"
    )
    acme.subscription.refresh_from_db()
    return acme


def _past_due(org, *, since=None):
    since = since or timezone.now() - timedelta(days=2)
    org.subscription.status = SubscriptionStatus.PAST_DUE
    org.subscription.save(update_fields=["status"])
    StripeCustomer.objects.update_or_create(
        organization=org,
        defaults={"stripe_customer_id": "cus_acme", "past_due_since": since},
    )
    return since


# --- Access and routes --------------------------------------------------------------------------


def test_routes_live_under_the_credits_namespace():
    assert reverse("credits:billing") == BILLING
    assert reverse("credits:billing_pack") == "/credits/billing/pack/"
    assert reverse("credits:billing_invoices") == "/credits/billing/invoices/"


def test_anonymous_is_sent_to_login(client):
    response = client.get(BILLING)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert client.post(reverse("credits:billing_pack"), {"pack": "credits-500"}).status_code == 302


# --- The page -----------------------------------------------------------------------------------


def test_owner_sees_plan_period_plans_packs_and_settings(client, acme, owner):
    response = _login(client, owner).get(BILLING)

    assert response.status_code == 200
    body, text = _body(response), _text(response)
    assert 'href="/credits/billing/" aria-current="page">Billing</a>' in body
    assert 'href="/credits/" aria-current' not in body  # Credits is not the current page
    assert "Free" in text and "Active" in text
    sub = acme.subscription
    assert f"{sub.current_period_start:%-d %b} – {sub.current_period_end:%-d %b %Y}" in text
    assert "Plan credits this period 50" in text  # the free plan's grant
    assert "No overage on this plan" in text
    for slug in ("starter", "creator", "studio"):
        assert f'data-testid="plan-{slug}"' in body
    assert "free" not in [m.lower() for m in re.findall(r'data-testid="plan-(\w+)"', body)]
    assert "disabled" not in _button(body, "Subscribe to Starter")
    assert "Upgrades apply at once" in text  # the policy, in one line
    for pack in CreditPack.objects.filter(active=True):
        assert "disabled" not in _button(body, f"Buy {pack.name}")
    assert "$40.00" in text and "$16.00 per 1,000 credits" in text  # 2,500 credits for 40 USD
    assert 'name="topup-threshold_credits"' in body
    assert 'name="alert-threshold_credits"' in body
    assert "Needs a saved card" in text
    assert "disabled" not in _button(body, "Manage cards &amp; invoices")
    assert "billing-read-only" not in body
    assert "past-due-banner" not in body
    assert "No credit packs bought yet" in text


def test_member_sees_the_page_read_only(client, acme, member):
    response = _login(client, member).get(BILLING)

    assert response.status_code == 200
    body, text = _body(response), _text(response)
    assert "only owners and admins can change the plan" in text
    assert "disabled" in _button(body, "Subscribe to Starter")
    assert "disabled" in _button(body, "Buy 500 credits")
    assert "disabled" in _button(body, "Manage cards &amp; invoices")
    assert "disabled" in _button(body, "Save auto top-up")
    assert "disabled" in _button(body, "Save email alert")
    assert body.count("<fieldset disabled>") == 2


@pytest.mark.parametrize(("name", "data"), POSTS)
def test_members_cannot_post_anything(client, acme, member, fake_gateway, name, data):
    _login(client, member)

    response = client.post(reverse(name), data)

    assert response.status_code == 403
    assert "Only owners and admins can manage billing." in _text(response)
    assert not fake_gateway.calls
    assert not Purchase.objects.exists()
    assert not StripeCustomer.objects.exists()
    assert not AutoTopUp.objects.exists()
    assert not LowBalanceAlert.objects.exists()


def test_outsiders_get_their_own_organization_only(client, acme, fake_gateway):
    other = make_org(slug="other", plan="free")
    _login(client, other.memberships.get().user)

    response = client.get(BILLING)

    assert "Acme" not in _text(response)
    assert "Other" in _text(response)


def test_overage_used_and_what_it_costs(client, catalog):
    org = make_org(slug="busy", name="Busy", plan="starter")  # 500 credits, cap 500 at $0.025
    account = account_of(org)
    hold = ledger.hold_create(account=account, amount=D("600"), key="job-1")
    ledger.hold_capture(hold=hold)
    _login(client, org.memberships.get().user)

    text = _text(client.get(BILLING))

    assert "Overage used 100 / 500" in text
    assert "So far $2.50 at $0.025 per credit" in text
    assert "Plan credits this period 500" in text


def test_checkout_return_notices(client, acme, owner):
    _login(client, owner)
    assert "Stripe is confirming the payment" in _text(client.get(BILLING + "?checkout=success"))
    assert "nothing was charged" in _text(client.get(BILLING + "?checkout=canceled"))
    assert "checkout-notice" not in _body(client.get(BILLING + "?checkout=<script>"))


# --- Credit packs -------------------------------------------------------------------------------


def test_buying_a_pack_redirects_to_the_checkout_session(client, acme, owner, fake_gateway):
    _login(client, owner)

    response = client.post(reverse("credits:billing_pack"), {"pack": "credits-2500"})

    assert response.status_code == 303
    purchase = Purchase.objects.get()
    session = fake_gateway.sessions[purchase.stripe_checkout_session_id]
    assert response["Location"] == session["url"]
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    assert session["metadata"] == {"kind": "credit_pack", "pack": "credits-2500"}
    assert session["client_reference_id"] == "acme"
    assert (purchase.status, purchase.credits, purchase.actor) == ("pending", 2500, owner)
    # Nothing is granted by the redirect: only the webhook grants.
    assert not account_of(acme).grants.filter(source="purchase").exists()


def test_an_unknown_or_inactive_pack_is_404(client, acme, owner, fake_gateway):
    CreditPack.objects.filter(slug="credits-500").update(active=False)
    _login(client, owner)
    for slug in ("credits-500", "nope", ""):
        assert client.post(reverse("credits:billing_pack"), {"pack": slug}).status_code == 404
    assert not fake_gateway.calls
    assert not Purchase.objects.exists()


def test_stripe_unreachable_shows_a_message_and_writes_nothing(client, acme, owner, fake_gateway):
    fake_gateway.fail_next["customer_create"] = unavailable()
    _login(client, owner)

    response = client.post(reverse("credits:billing_pack"), {"pack": "credits-500"}, follow=True)

    assert response.redirect_chain == [(BILLING, 303)]
    assert "The payment provider could not be reached" in _text(response)
    assert "Stripe is down (test)" not in _text(response)  # no internals
    assert not Purchase.objects.exists()
    assert not StripeCustomer.objects.exists()


def test_a_refused_session_is_reported_and_the_purchase_canceled(client, acme, owner, fake_gateway):
    from credits.billing.errors import StripeRequestInvalid

    fake_gateway.fail_next["checkout_session_create"] = StripeRequestInvalid(
        "create checkout session: No such price: 'price_x'"
    )
    _login(client, owner)

    response = client.post(reverse("credits:billing_pack"), {"pack": "credits-500"}, follow=True)

    assert "The payment provider refused the request: No such price" in _text(response)
    # The service keeps the attempt, canceled (no credits, never pending).
    assert list(Purchase.objects.values_list("status", flat=True)) == ["canceled"]
    assert not account_of(acme).grants.filter(source="purchase").exists()


# --- Plans --------------------------------------------------------------------------------------


def test_subscribing_goes_to_checkout(client, acme, owner, fake_gateway):
    _login(client, owner)

    response = client.post(reverse("credits:billing_plan"), {"plan": "creator"})

    assert response.status_code == 303
    (params,) = fake_gateway.params("checkout_session_create")
    assert params["metadata"] == {"kind": "subscription", "plan": "creator"}
    assert response["Location"].startswith("https://checkout.stripe.test/pay/")
    acme.subscription.refresh_from_db()
    assert acme.subscription.plan.slug == "free"  # only the webhook activates


def test_plans_not_for_sale_are_404(client, acme, owner, fake_gateway):
    _login(client, owner)
    for slug in ("free", "enterprise", "nope"):
        assert client.post(reverse("credits:billing_plan"), {"plan": slug}).status_code == 404
    assert not fake_gateway.calls


def test_subscribed_page_offers_upgrade_downgrade_cancel(client, subscribed, owner):
    body = _body(_login(client, owner).get(BILLING))
    text = _text(client.get(BILLING))

    assert "Paid through Stripe" in text
    assert "Renews on" in text
    assert "disabled" in _button(body, "Current plan")
    assert "disabled" not in _button(body, "Upgrade to Creator")
    assert "Cancel subscription…" in text
    assert "To go back to the free plan, cancel the subscription" in text


def test_members_of_a_subscribed_organization_get_no_cancel_button(client, subscribed, member):
    text = _text(_login(client, member).get(BILLING))
    assert "Starter" in text and "Renews on" in text
    assert "Cancel subscription" not in text


def test_upgrade_switches_the_running_subscription(client, subscribed, owner, fake_gateway):
    _login(client, owner)

    response = client.post(reverse("credits:billing_plan"), {"plan": "creator"}, follow=True)

    assert response.redirect_chain == [(BILLING, 303)]
    subscribed.subscription.refresh_from_db()
    assert subscribed.subscription.plan.slug == "creator"
    assert fake_gateway.count("checkout_session_create") == 0
    assert fake_gateway.params("subscription_change_price") == [{"price": PRICES["creator"]}]
    text = _text(response)
    assert "Upgraded to Creator" in text and "topped up to 2,000" in text
    assert "Plan credits this period 2,000" in text


def test_downgrade_message_explains_the_credits_stay(client, subscribed, owner, fake_gateway):
    Plan.objects.filter(slug="creator").update(stripe_price_id=PRICES["creator"])
    _login(client, owner)
    client.post(reverse("credits:billing_plan"), {"plan": "creator"})

    response = client.post(reverse("credits:billing_plan"), {"plan": "starter"}, follow=True)

    subscribed.subscription.refresh_from_db()
    assert subscribed.subscription.plan.slug == "starter"
    assert "Downgraded to Starter" in _text(response)
    assert "the credits granted this period stay" in _text(response)


def test_a_failed_plan_change_changes_nothing(client, subscribed, owner, fake_gateway):
    fake_gateway.fail_next["subscription_change_price"] = unavailable()
    _login(client, owner)

    response = client.post(reverse("credits:billing_plan"), {"plan": "studio"}, follow=True)

    assert "could not be reached" in _text(response)
    subscribed.subscription.refresh_from_db()
    assert subscribed.subscription.plan.slug == "starter"


def test_cancel_then_resume(client, subscribed, owner, fake_gateway):
    _login(client, owner)

    response = client.post(reverse("credits:billing_cancel"), follow=True)

    subscribed.subscription.refresh_from_db()
    assert subscribed.subscription.cancel_at_period_end is True
    text = _text(response)
    assert "Your subscription ends on" in text
    assert "Moves to Free on" in text
    assert "Keep my subscription" in text

    response = client.post(reverse("credits:billing_resume"), follow=True)

    subscribed.subscription.refresh_from_db()
    assert subscribed.subscription.cancel_at_period_end is False
    assert "Your subscription continues" in _text(response)


def test_cancel_without_a_subscription_is_a_message(client, acme, owner, fake_gateway):
    _login(client, owner)
    response = client.post(reverse("credits:billing_cancel"), follow=True)
    assert "has no Stripe subscription" in _text(response)


def test_portal_redirects_to_stripe(client, acme, owner, fake_gateway, settings):
    _login(client, owner)

    response = client.post(reverse("credits:billing_portal"))

    assert response.status_code == 303
    customer = StripeCustomer.objects.get(organization=acme)
    assert response["Location"] == f"https://billing.stripe.test/p/{customer.stripe_customer_id}"
    (params,) = fake_gateway.params("portal_session_create")
    assert params["return_url"] == settings.STRIPE_PORTAL_RETURN_URL


def test_get_is_not_allowed_on_actions(client, acme, owner):
    _login(client, owner)
    for name, _ in POSTS:
        assert client.get(reverse(name)).status_code == 405


# --- Auto top-up and low-balance email ----------------------------------------------------------


def _topup(client, **fields):
    data = {"topup-threshold_credits": "100", "topup-pack": "credits-500", **fields}
    return client.post(reverse("credits:billing_auto_top_up"), data)


def test_auto_top_up_is_saved_through_the_service(client, acme, owner):
    StripeCustomer.objects.create(organization=acme, stripe_customer_id="cus_acme")
    _login(client, owner)

    response = _topup(client, **{"topup-enabled": "on", "topup-threshold_credits": "250.5"})

    assert response.status_code == 303
    config = AutoTopUp.objects.get(organization=acme)
    assert (config.enabled, config.threshold_credits, config.pack.slug) == (
        True,
        D("250.5"),
        "credits-500",
    )
    assert config.updated_by == owner
    page = client.get(BILLING)
    assert "Auto top-up settings saved." in _text(page)
    assert 'value="250.5"' in _body(page)
    assert 'data-testid="auto-top-up-state">On' in _body(page)


@pytest.mark.parametrize(
    ("threshold", "error"),
    [
        ("-5", "Must be zero or more."),
        ("abc", "Enter a number of credits"),
        ("1.23456", "decimal places"),
        ("", "This field is required."),
        ("1e30", "Ensure this value is less than or equal to"),
    ],
)
def test_a_bad_threshold_is_a_form_error_and_nothing_is_written(
    client, acme, owner, threshold, error
):
    StripeCustomer.objects.create(organization=acme, stripe_customer_id="cus_acme")
    _login(client, owner)

    response = _topup(client, **{"topup-enabled": "on", "topup-threshold_credits": threshold})

    assert response.status_code == 200
    body = _body(response)
    assert error in _text(response)
    assert 'id="id_topup-threshold_credits_error"' in body
    assert 'aria-invalid="true"' in body
    assert not AutoTopUp.objects.exists()


def test_an_unknown_pack_is_a_form_error(client, acme, owner):
    _login(client, owner)
    response = _topup(client, **{"topup-pack": "credits-9"})
    assert response.status_code == 200
    assert "Choose one of the packs on offer." in _text(response)
    assert not AutoTopUp.objects.exists()


def test_turning_auto_top_up_on_needs_a_saved_card(client, acme, owner):
    _login(client, owner)

    response = _topup(client, **{"topup-enabled": "on"})

    assert response.status_code == 200
    assert "Buy a credit pack or subscribe first" in _text(response)
    assert 'id="id_topup-enabled_error"' in _body(response)
    assert not AutoTopUp.objects.exists()


def test_low_balance_email_is_saved_and_validated(client, acme, owner):
    _login(client, owner)
    url = reverse("credits:billing_low_balance")

    bad = client.post(url, {"alert-enabled": "on", "alert-threshold_credits": "-1"})
    assert bad.status_code == 200 and "Must be zero or more." in _text(bad)
    assert not LowBalanceAlert.objects.exists()

    good = client.post(url, {"alert-enabled": "on", "alert-threshold_credits": "75"})
    assert good.status_code == 303
    alert = LowBalanceAlert.objects.get(organization=acme)
    assert (alert.enabled, alert.threshold_credits) == (True, D("75"))
    off = client.post(url, {"alert-threshold_credits": "75"})
    assert off.status_code == 303
    alert.refresh_from_db()
    assert alert.enabled is False


# --- Past due -----------------------------------------------------------------------------------


def test_past_due_banner_shows_site_wide_with_the_downgrade_date(
    client, subscribed, owner, settings
):
    since = _past_due(subscribed)
    deadline = since + timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
    _login(client, owner)

    for url in (BILLING, reverse("dashboard"), reverse("credits:overview")):
        response = client.get(url)
        text = _text(response)
        assert "Payment failed — update your card before" in text
        assert f"{deadline:%-d %B %Y}" in text
        assert "or Acme moves to the free plan" in text
        assert "Update card" in text
    body = _body(client.get(BILLING))
    assert 'data-testid="billing-status">Payment failed' in body
    # Changing plan waits until the card is fixed; the portal is the way out.
    assert "disabled" in _button(body, "Upgrade to Creator")
    assert "update your card first" in _text(client.get(BILLING))


def test_members_see_the_banner_without_the_button(client, subscribed, member):
    _past_due(subscribed)
    text = _text(_login(client, member).get(reverse("dashboard")))
    assert "Payment failed" in text
    assert "Ask an owner or admin to update it." in text
    assert "Update card" not in text


def test_no_banner_when_payments_are_fine(client, subscribed, owner):
    assert "past-due-banner" not in _body(_login(client, owner).get(reverse("dashboard")))


def test_the_banner_button_opens_the_portal(client, subscribed, owner, fake_gateway):
    _past_due(subscribed)
    _login(client, owner)
    response = client.post(reverse("credits:billing_portal"))
    assert response.status_code == 303
    assert response["Location"] == "https://billing.stripe.test/p/cus_acme"


# --- Stripe not configured ----------------------------------------------------------------------


def test_without_stripe_the_page_renders_with_a_notice_and_disabled_buttons(
    client, acme, owner, settings, fake_gateway
):
    settings.STRIPE_SECRET_KEY = ""
    _login(client, owner)

    response = client.get(BILLING)

    assert response.status_code == 200
    body, text = _body(response), _text(response)
    assert "Payments are not set up on this server." in text
    assert "disabled" in _button(body, "Subscribe to Starter")
    assert "disabled" in _button(body, "Buy 500 credits")
    assert "disabled" in _button(body, "Manage cards &amp; invoices")
    assert "disabled" in _button(body, "Save auto top-up")
    assert "disabled" not in _button(body, "Save email alert")  # needs no Stripe
    assert "Invoices appear here once payments are set up." in text
    assert not fake_gateway.calls


def test_without_stripe_the_notice_says_what_cannot_be_done_and_how_to_turn_it_on(
    client, acme, owner, settings
):
    settings.STRIPE_SECRET_KEY = ""
    _login(client, owner)

    text = _text(client.get(BILLING))

    assert "You can't upgrade, buy credits or manage a card here yet" in text
    # What the operator does: the two secrets and stripe_sync; the admin meanwhile.
    assert "STRIPE_SECRET_KEY" in text and "STRIPE_WEBHOOK_SECRET" in text
    assert "manage.py stripe_sync" in text
    assert "staff can change an organization's plan" in text.replace("&#x27;", "'")
    assert 'data-testid="billing-admin-links"' not in _body(client.get(BILLING))  # not staff


def test_without_stripe_staff_get_links_to_change_the_plan_and_grant_credits(
    client, acme, owner, settings
):
    settings.STRIPE_SECRET_KEY = ""
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    _login(client, owner)

    body = _body(client.get(BILLING))

    subscription = acme.subscription
    assert reverse("admin:accounts_subscription_change", args=[subscription.pk]) in body
    assert reverse("admin:credits_creditaccount_changelist") + "?q=acme" in body


def test_with_stripe_there_is_no_not_configured_notice(client, acme, owner, fake_gateway):
    _login(client, owner)
    assert "billing-not-configured" not in _body(client.get(BILLING))


@pytest.mark.parametrize(("name", "data"), POSTS[:6])
def test_without_stripe_posts_say_so_and_write_nothing(client, acme, owner, settings, name, data):
    settings.STRIPE_SECRET_KEY = ""  # the real gateway: it would raise BillingNotConfigured
    _login(client, owner)

    response = client.post(reverse(name), data, follow=True)

    assert response.redirect_chain == [(BILLING, 303)]
    assert "Payments are not set up on this server yet" in _text(response)
    assert not Purchase.objects.exists()
    assert not StripeCustomer.objects.exists()
    assert not AutoTopUp.objects.exists()


def test_without_stripe_the_low_balance_email_still_works(client, acme, owner, settings):
    settings.STRIPE_SECRET_KEY = ""
    _login(client, owner)
    response = client.post(
        reverse("credits:billing_low_balance"),
        {"alert-enabled": "on", "alert-threshold_credits": "10"},
    )
    assert response.status_code == 303
    assert LowBalanceAlert.objects.filter(organization=acme, enabled=True).exists()


# --- Purchases, overage, invoices ---------------------------------------------------------------


def test_purchases_and_overage_records_are_listed(client, acme, owner):
    from credits.models import OverageRecord

    pack = CreditPack.objects.get(slug="credits-2500")
    Purchase.objects.create(
        organization=acme,
        kind="credit_pack",
        pack=pack,
        credits=2500,
        amount_usd=40,
        status="paid",
    )
    Purchase.objects.create(
        organization=acme,
        kind="auto_top_up",
        pack=pack,
        credits=2500,
        amount_usd=40,
        status="failed",
        failure_reason="Your card was declined.",
        flagged=True,
    )
    now = timezone.now()
    OverageRecord.objects.create(
        account=account_of(acme),
        period_start=now - timedelta(days=60),
        period_end=now - timedelta(days=30),
        credits=D("120"),
        usd_per_credit=D("0.025"),
        amount_usd=D("3"),
        plan_slug="starter",
        status="invoiced",
    )
    _login(client, owner)

    text = _text(client.get(BILLING))

    assert "Checkout 2,500 $40.00 Paid" in text
    assert "Auto top-up 2,500 $40.00 Failed Under review Your card was declined." in text
    assert "starter 120 $0.025 $3.00 Invoiced" in text


def test_invoices_load_as_a_fragment(client, subscribed, owner, fake_gateway):
    fake_gateway.invoices["in_1"] = {
        "id": "in_1",
        "customer": "cus_acme",
        "number": "ACME-0001",
        "status": "paid",
        "amount_due": 900,
        "amount_paid": 900,
        "created": 1767225600,  # 2026-01-01
        "description": None,
        "lines": {"data": [{"description": "1 × Starter plan"}]},
        "hosted_invoice_url": "https://invoice.stripe.test/i/1",
        "invoice_pdf": "https://invoice.stripe.test/i/1.pdf",
    }
    _login(client, owner)
    page = _body(client.get(BILLING))
    assert 'hx-get="/credits/billing/invoices/"' in page

    response = client.get(reverse("credits:billing_invoices"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    body = _body(response)
    assert "<html" not in body
    text = _text(response)
    assert "ACME-0001 1 Jan 2026 1 × Starter plan $9.00 Paid" in text
    assert 'href="https://invoice.stripe.test/i/1.pdf"' in body
    # Without JavaScript it is a page of its own.
    full = client.get(reverse("credits:billing_invoices"))
    assert "<html" in _body(full) and "ACME-0001" in _text(full)


def test_invoices_that_cannot_be_loaded_say_so(client, subscribed, owner, fake_gateway):
    def down(**kwargs):
        raise unavailable()

    fake_gateway.invoices_list = down
    _login(client, owner)
    response = client.get(reverse("credits:billing_invoices"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Invoices could not be loaded" in _text(response)
