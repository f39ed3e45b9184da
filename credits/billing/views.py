"""Billing web views (routes in `credits.billing.urls`).

The billing page (/credits/billing/): plan and period, plan changes, credit packs, auto top-up
and low-balance settings, purchases, overage and invoices, the Customer Portal.

Thin, like the other views: reads come from `credits.billing.selectors` (and the credits
selectors), every change goes through a `credits.billing` service with `actor=request.user`.
Only owners and admins change anything: a member's POST is a 403 before any service runs (the
services check it again). Payment-provider trouble (`config.errors` subclasses from
`credits.billing.errors`) becomes a message on the page; these views write nothing themselves.
Without STRIPE_SECRET_KEY the page still renders, with a notice and its buttons disabled.

Stripe Checkout and the Customer Portal are other sites: those POSTs answer 303 with the
session URL (plain forms, never htmx, which could not follow a cross-site redirect).

And the Stripe webhook endpoint, POST /stripe/webhook/ (no session, no CSRF token: Stripe signs
the body instead). Deliberately not atomic: see `credits.billing.webhooks`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.dateformat import format as date_format
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.contracts.selectors import contract_latest
from accounts.entitlements import plan_entitlements
from accounts.models import Plan
from accounts.tenancy import tenant_scoped
from config.errors import NotFound, PermissionDenied, ServiceError, ValidationError
from config.web.decorators import organization_required
from config.web.formats import format_credits
from config.web.forms import add_service_errors
from config.web.http import is_partial
from credits import selectors as credit_selectors
from credits import services as credit_services
from credits.billing import checkout, topup, webhooks
from credits.billing import forms as billing_forms
from credits.billing import selectors as billing_selectors
from credits.billing.errors import (
    BillingNotConfigured,
    PaymentDeclined,
    StripeIdempotencyMismatch,
    StripeObjectNotFound,
    StripeRequestInvalid,
    StripeUnavailable,
)
from credits.money import credits_to_usd, round_usd_for_display
from credits.trials.referrals import referral_link
from credits.trials.selectors import TRIAL_REFUSED, trial_status, trialing_without_card
from credits.velocity.selectors import velocity_status

logger = logging.getLogger(__name__)

RECENT_PURCHASES = 20
RECENT_OVERAGES = 12
RECENT_INVOICES = 12

NOT_CONFIGURED = (
    "Payments are not set up on this server yet, so nothing can be bought or changed here."
)
MANAGERS_ONLY = "Only owners and admins can manage billing."


def billing_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


# --- Errors -------------------------------------------------------------------------------------


def _error_text(exc: ServiceError) -> str:
    """What a person should read for a service or payment-provider error."""
    if isinstance(exc, BillingNotConfigured):
        logger.warning("billing not configured: %s", exc.detail)
        return NOT_CONFIGURED
    if isinstance(exc, StripeUnavailable):
        logger.warning("payment provider unavailable: %s", exc.detail)
        return (
            "The payment provider could not be reached, so nothing was charged or changed. "
            "Please try again in a minute."
        )
    if isinstance(exc, StripeObjectNotFound):
        logger.warning("stripe object missing: %s", exc.detail)
        return (
            "The payment provider does not know this customer or subscription any more; "
            "nothing was changed. Please contact support."
        )
    if isinstance(exc, StripeIdempotencyMismatch):
        return "That request was already sent with other details. Reload the page and try again."
    if isinstance(exc, StripeRequestInvalid | PaymentDeclined):
        return f"The payment provider refused the request: {_without_prefix(exc.detail)}"
    return exc.detail


def _without_prefix(detail: str) -> str:
    """The gateway prefixes its messages with the operation ("create session: …")."""
    head, sep, tail = detail.partition(": ")
    if sep and tail and len(head) <= 40 and head.replace(" ", "").isalpha():
        return tail
    return detail


def _forbidden(exc: PermissionDenied | None = None) -> DjangoPermissionDenied:
    return DjangoPermissionDenied(exc.detail if exc else MANAGERS_ONLY)


def _require_manager(request: HttpRequest) -> None:
    membership = getattr(request, "membership", None)
    if membership is None or not membership.can_manage:
        raise _forbidden()


def _page(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("credits:billing"), status=303)


def _trial_refused(request: HttpRequest) -> HttpResponseRedirect:
    messages.error(request, TRIAL_REFUSED)
    return _page(request)


def _offsite(url: str) -> HttpResponse:
    """303 See Other to Stripe (Checkout or the portal), never cached."""
    response = HttpResponse(status=303)
    response["Location"] = url
    add_never_cache_headers(response)
    return response


# --- Page data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanOption:
    plan: Plan
    current: bool
    action: str  # "current" | "subscribe" | "upgrade" | "downgrade"
    disabled: bool
    note: str  # why this plan's button is disabled, when it is about this plan

    @property
    def label(self) -> str:
        return {
            "current": "Current plan",
            "subscribe": f"Subscribe to {self.plan.name}",
            "upgrade": f"Upgrade to {self.plan.name}",
            "downgrade": f"Downgrade to {self.plan.name}",
        }[self.action]


@dataclass(frozen=True)
class InvoiceRow:
    number: str
    created: datetime | None
    status: str
    amount_due: int
    amount_paid: int
    description: str
    url: str
    pdf: str


def _plan_options(status, *, enabled: bool) -> list[PlanOption]:
    """Each plan for sale with what its button does. `enabled`: Stripe is configured and the
    user may manage billing (said once on the page, not on every plan). During a free trial
    only the trial's plan is offered, to subscribe to."""
    current = status.plan
    if trialing_without_card(status.subscription):
        trial_plan = billing_selectors.plans_for_sale().filter(pk=getattr(current, "pk", None))
        return [PlanOption(p, True, "subscribe", not enabled, "") for p in trial_plan]
    by_contract = current is not None and not current.is_public
    options = []
    for plan in billing_selectors.plans_for_sale():
        is_current = current is not None and plan.pk == current.pk
        if is_current:
            action = "current"
        elif not status.stripe_managed:
            action = "subscribe"
        elif current is not None and plan.monthly_credits < current.monthly_credits:
            action = "downgrade"
        else:
            action = "upgrade"
        note = ""
        if is_current:
            pass
        elif by_contract:
            note = "Your plan is set by contract: contact us to change it."
        elif not plan.stripe_price_id:
            note = "Not available online yet."
        elif status.past_due and status.stripe_managed:
            note = "The last payment failed: update your card first."
        options.append(
            PlanOption(
                plan=plan,
                current=is_current,
                action=action,
                disabled=is_current or bool(note) or not enabled,
                note=note,
            )
        )
    return options


def _entitlements_table(status) -> dict:
    """What each plan for sale (and the current one) includes, as rows of a comparison
    table: what an upgrade buys."""
    plans = list(billing_selectors.plans_for_sale())
    if status.plan is not None and all(p.pk != status.plan.pk for p in plans):
        plans.append(status.plan)
    columns = [plan_entitlements(plan) for plan in plans]
    rows = [
        {"name": item.name, "label": item.label, "values": [col[i].value for col in columns]}
        for i, item in enumerate(columns[0])
    ] if columns else []  # fmt: skip
    current = status.plan.pk if status.plan is not None else None
    return {"plans": [(p, p.pk == current) for p in plans], "rows": rows}


def _invoice_rows(raw: list[dict]) -> list[InvoiceRow]:
    rows = []
    for invoice in raw:
        created = invoice.get("created")
        lines = ((invoice.get("lines") or {}).get("data")) or []
        description = (
            invoice.get("description")
            or (lines[0].get("description") if lines and isinstance(lines[0], dict) else "")
            or ""
        )
        rows.append(
            InvoiceRow(
                number=invoice.get("number") or invoice.get("id") or "",
                created=datetime.fromtimestamp(int(created), tz=UTC) if created else None,
                status=invoice.get("status") or "",
                amount_due=int(invoice.get("amount_due") or 0),
                amount_paid=int(invoice.get("amount_paid") or 0),
                description=description,
                url=invoice.get("hosted_invoice_url") or "",
                pdf=invoice.get("invoice_pdf") or "",
            )
        )
    return rows


CHECKOUT_NOTICES = {
    "success": (
        "success",
        "Thank you! Stripe is confirming the payment: the credits or the new plan show up "
        "here within a minute.",
    ),
    "canceled": ("info", "Checkout was canceled; nothing was charged."),
}


def _context(
    request: HttpRequest,
    *,
    topup_form: billing_forms.AutoTopUpForm | None = None,
    alert_form: billing_forms.LowBalanceForm | None = None,
) -> dict:
    organization = request.organization
    membership = request.membership
    can_manage = bool(membership and membership.can_manage)
    configured = billing_configured()
    status = billing_selectors.billing_status(organization=organization)
    subscription = status.subscription
    plan = status.plan
    summary = credit_selectors.balance_summary(organization=organization)
    overage_price = plan.overage_price_usd if plan and plan.overage_enabled else None
    contract = contract_latest(organization_id=organization.pk) if can_manage else None
    contract_active = contract is not None and contract.in_force(timezone.now())
    if plan is not None and contract_active and summary.overage_cap > 0:
        overage_price = credit_services.overage_price_for(plan, organization_id=organization.pk)
    overage_cost = (
        round_usd_for_display(credits_to_usd(summary.overage_used, overage_price))
        if overage_price is not None
        else None
    )
    packs = [
        {
            "pack": pack,
            "per_thousand": round_usd_for_display(pack.price_usd * 1000 / pack.credits),
        }
        for pack in billing_selectors.packs_for_sale()
    ]
    notice = CHECKOUT_NOTICES.get(request.GET.get("checkout", ""))
    return {
        "organization": organization,
        "can_manage": can_manage,
        "configured": configured,
        "actions_enabled": configured and can_manage,
        "status": status,
        "trialing": trialing_without_card(subscription),
        "subscription": subscription,
        "plan": plan,
        "period_credits": billing_selectors.period_plan_credits(
            organization=organization, subscription=subscription
        ),
        "summary": summary,
        "overage_price": overage_price,
        "overage_cost": overage_cost,
        "plan_options": _plan_options(status, enabled=configured and can_manage),
        "entitlements": _entitlements_table(status),
        "contract": contract,
        "contract_active": contract_active,
        "packs": packs,
        "topup_form": topup_form or billing_forms.topup_form_initial(status),
        "alert_form": alert_form or billing_forms.alert_form_initial(status),
        "has_customer": status.customer is not None,
        "velocity": velocity_status(organization=organization),
        "trials": trial_status(organization=organization, subscription=subscription),
        "referral_link": referral_link(organization=organization) if can_manage else "",
        "auto_top_up_capped": bool(
            status.auto_top_up
            and status.auto_top_up.capped_month == topup.month_start(datetime.now(UTC)).date()
        ),
        "purchases": list(
            billing_selectors.purchases_for(organization=organization)[:RECENT_PURCHASES]
        ),
        "overage_records": list(
            billing_selectors.overage_records_for(organization=organization)[:RECENT_OVERAGES]
        ),
        "checkout_notice": notice,
        "grace_days": settings.BILLING_PAST_DUE_GRACE_DAYS,
    }


# --- Views --------------------------------------------------------------------------------------


@require_GET
@organization_required
@tenant_scoped
def billing(request: HttpRequest) -> HttpResponse:
    response = render(request, "billing/page.html", _context(request))
    add_never_cache_headers(response)
    return response


@require_GET
@organization_required
def billing_invoices(request: HttpRequest) -> HttpResponse:
    """The organization's Stripe invoices (a Stripe call, so the page loads them on its own:
    htmx swaps this fragment in; without JavaScript it is a page of its own)."""
    error = ""
    rows: list[InvoiceRow] = []
    if not billing_configured():
        error = NOT_CONFIGURED
    else:
        try:
            rows = _invoice_rows(
                checkout.invoices_recent(organization=request.organization, limit=RECENT_INVOICES)
            )
        except ServiceError as exc:
            error = "Invoices could not be loaded: " + _error_text(exc)
    context = {
        "organization": request.organization,
        "invoices": rows,
        "invoices_error": error,
        "can_manage": bool(request.membership and request.membership.can_manage),
        "configured": billing_configured(),
    }
    partial = is_partial(request)
    template = "billing/partials/invoices.html" if partial else "billing/invoices.html"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    add_never_cache_headers(response)
    return response


def _run(request: HttpRequest, call, *, success: str | None = None):
    """Run a service call for a POST. Returns (ok, result). Permission problems are raised as
    403/404; service and payment-provider errors become an error message."""
    try:
        result = call()
    except PermissionDenied as exc:
        raise _forbidden(exc) from exc
    except StripeObjectNotFound as exc:  # a NotFound, but about Stripe: not a 404 page
        messages.error(request, _error_text(exc))
        return False, None
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    except ServiceError as exc:
        messages.error(request, _error_text(exc))
        return False, None
    if success:
        messages.success(request, success)
    return True, result


def _guard(request: HttpRequest) -> bool:
    """Common to every POST: owners/admins only (403), and Stripe configured (a message)."""
    _require_manager(request)
    if not billing_configured():
        messages.error(request, NOT_CONFIGURED)
        return False
    return True


@require_POST
@organization_required
def billing_plan(request: HttpRequest) -> HttpResponse:
    """Subscribe through Checkout (no Stripe subscription yet) or switch the running one."""
    if not _guard(request):
        return _page(request)
    plan = billing_selectors.plans_for_sale().filter(slug=request.POST.get("plan", "")).first()
    if plan is None:
        raise Http404("No such plan for sale.")
    organization = request.organization
    status = billing_selectors.billing_status(organization=organization)
    if trialing_without_card(status.subscription):
        if status.plan is None or status.plan.pk != plan.pk:
            return _trial_refused(request)
    elif status.plan is not None and status.plan.pk == plan.pk:
        messages.info(request, f"{organization.name} is already on the {plan.name} plan.")
        return _page(request)
    if not status.stripe_managed:
        ok, url = _run(
            request,
            lambda: checkout.checkout_for_plan(
                organization=organization, plan=plan, actor=request.user
            ),
        )
        return _offsite(url) if ok else _page(request)
    old = status.plan
    upgrade = old is None or plan.monthly_credits >= old.monthly_credits
    if upgrade:
        text = (
            f"Upgraded to {plan.name}: its limits apply now and this period's plan credits were "
            f"topped up to {format_credits(plan.monthly_credits)}. Stripe invoices the prorated "
            "difference."
        )
    else:
        text = (
            f"Downgraded to {plan.name}: its limits apply now; the credits granted this period "
            f"stay until it ends, then you get {format_credits(plan.monthly_credits)} a month."
        )
    _run(
        request,
        lambda: checkout.subscription_change_plan(
            organization=organization, plan=plan, actor=request.user
        ),
        success=text,
    )
    return _page(request)


@require_POST
@organization_required
def billing_pack(request: HttpRequest) -> HttpResponse:
    """Buy a credit pack: a Checkout session, then 303 to it."""
    if not _guard(request):
        return _page(request)
    pack = billing_selectors.packs_for_sale().filter(slug=request.POST.get("pack", "")).first()
    if pack is None:
        raise Http404("No such credit pack for sale.")
    ok, url = _run(
        request,
        lambda: checkout.checkout_for_pack(
            organization=request.organization, pack=pack, actor=request.user
        ),
    )
    return _offsite(url) if ok else _page(request)


@require_POST
@organization_required
def billing_portal(request: HttpRequest) -> HttpResponse:
    """Stripe's Customer Portal (cards, invoices, cancellation): 303 to a fresh session."""
    if not _guard(request):
        return _page(request)
    ok, url = _run(
        request,
        lambda: checkout.portal_url(organization=request.organization, actor=request.user),
    )
    return _offsite(url) if ok else _page(request)


@require_POST
@organization_required
def billing_cancel(request: HttpRequest) -> HttpResponse:
    if not _guard(request):
        return _page(request)
    status = billing_selectors.billing_status(organization=request.organization)
    if trialing_without_card(status.subscription):
        return _trial_refused(request)
    end = status.subscription.current_period_end if status.subscription else None
    when = f" on {date_format(end, 'j F Y')}" if end else " at the end of the period"
    _run(
        request,
        lambda: checkout.subscription_cancel(
            organization=request.organization, actor=request.user, at_period_end=True
        ),
        success=(
            f"Your subscription ends{when}. You keep the plan and its credits until then; "
            "then the organization moves to the free plan."
        ),
    )
    return _page(request)


@require_POST
@organization_required
def billing_resume(request: HttpRequest) -> HttpResponse:
    if not _guard(request):
        return _page(request)
    if trialing_without_card(
        billing_selectors.billing_status(organization=request.organization).subscription
    ):
        return _trial_refused(request)
    _run(
        request,
        lambda: checkout.subscription_resume(organization=request.organization, actor=request.user),
        success="Your subscription continues: it renews as usual.",
    )
    return _page(request)


def _settings_post(request: HttpRequest, form_class, save, success: str) -> HttpResponse:
    """A settings form: invalid input or a refusal re-shows the page with the errors next to the
    fields (nothing written); success redirects with a message."""
    _require_manager(request)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            save(form.cleaned_data)
        except PermissionDenied as exc:
            raise _forbidden(exc) from exc
        except ValidationError as exc:
            add_service_errors(form, exc)
        except ServiceError as exc:
            form.add_error(None, _error_text(exc))
        else:
            messages.success(request, success)
            return _page(request)
    key = "topup_form" if form_class is billing_forms.AutoTopUpForm else "alert_form"
    response = render(request, "billing/page.html", _context(request, **{key: form}))
    add_never_cache_headers(response)
    return response


@require_POST
@organization_required
def billing_auto_top_up(request: HttpRequest) -> HttpResponse:
    if not _guard(request):  # it charges the saved card: needs Stripe
        return _page(request)

    def save(data):
        topup.auto_top_up_configure(
            organization=request.organization,
            actor=request.user,
            enabled=data["enabled"],
            threshold_credits=data["threshold_credits"],
            pack=data["pack"],
            monthly_cap_credits=data.get("monthly_cap_credits"),
            max_per_month=data.get("max_per_month"),
        )

    return _settings_post(request, billing_forms.AutoTopUpForm, save, "Auto top-up settings saved.")


@require_POST
@organization_required
def billing_low_balance(request: HttpRequest) -> HttpResponse:
    def save(data):
        topup.low_balance_alert_configure(
            organization=request.organization,
            actor=request.user,
            enabled=data["enabled"],
            threshold_credits=data["threshold_credits"],
        )

    return _settings_post(
        request, billing_forms.LowBalanceForm, save, "Low-balance email settings saved."
    )


# --- Stripe webhook -----------------------------------------------------------------------------


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    outcome = webhooks.receive(body=request.body, signature=request.headers.get("Stripe-Signature"))
    return JsonResponse(outcome.body, status=outcome.status_code)
