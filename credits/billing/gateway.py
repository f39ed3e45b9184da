"""The one module that imports `stripe`: a thin wrapper over stripe-python's `StripeClient`.

* The API base comes from ``STRIPE_API_BASE`` (empty: Stripe itself), so tests point it at a
  local Stripe-compatible server (localstripe).
* Every Stripe error becomes a `config.errors` subclass (`credits.billing.errors`).
* Every creating call takes an idempotency key that callers derive from *our* ids (purchase,
  overage record, organization), so a retry after a crash or timeout creates nothing twice.
* Results are plain dicts (the JSON Stripe returned), never stripe-python objects.

``STRIPE_LEGACY_PLANS`` switches recurring prices to the legacy Plans API (`/v1/plans`,
subscription items with ``plan``), for test servers that implement only that (localstripe);
Stripe accepts both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import stripe
from django.conf import settings

from credits.billing.errors import (
    BillingNotConfigured,
    InvalidSignature,
    PaymentDeclined,
    StripeIdempotencyMismatch,
    StripeObjectNotFound,
    StripeRequestInvalid,
    StripeUnavailable,
)

logger = logging.getLogger(__name__)

Obj = dict[str, Any]


def _plain(value) -> Any:
    """A stripe-python object (or list of them) → plain dicts and lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _error_body(exc: stripe.StripeError) -> dict:
    body = getattr(exc, "json_body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


@contextlib.contextmanager
def _mapped_errors(what: str) -> Iterator[None]:
    try:
        yield
    except stripe.CardError as exc:
        err = _error_body(exc)
        pi = err.get("payment_intent")
        raise PaymentDeclined(
            f"{what}: {exc.user_message or err.get('message') or 'card declined'}",
            decline_code=err.get("decline_code") or err.get("code") or "",
            payment_intent=pi.get("id") if isinstance(pi, dict) else (pi or ""),
        ) from exc
    except stripe.IdempotencyError as exc:
        raise StripeIdempotencyMismatch(f"{what}: {exc.user_message or exc}") from exc
    except stripe.InvalidRequestError as exc:
        status = getattr(exc, "http_status", None)
        code = _error_body(exc).get("code") or ""
        if status == 404 or code == "resource_missing":
            raise StripeObjectNotFound(f"{what}: {exc.user_message or 'not found'}") from exc
        if status == 409 or code == "idempotency_key_in_use":
            raise StripeUnavailable(f"{what}: the same request is in progress") from exc
        raise StripeRequestInvalid(f"{what}: {exc.user_message or exc}", stripe_code=code) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise BillingNotConfigured(f"{what}: Stripe refused our API key ({exc}).") from exc
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise StripeUnavailable(f"{what}: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        raise StripeUnavailable(f"{what}: {exc.user_message or exc}") from exc


def _opts(idempotency_key: str | None) -> dict:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


class StripeGateway:
    def __init__(
        self,
        *,
        api_key: str,
        api_base: str = "",
        max_network_retries: int = 2,
        timeout_s: float = 30,
        legacy_plans: bool = False,
    ) -> None:
        if not api_key:
            raise BillingNotConfigured("STRIPE_SECRET_KEY is not set.")
        self.legacy_plans = legacy_plans
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_s),
        )
        self.v1 = self._client.v1

    # --- Customers ------------------------------------------------------------------------------

    def customer_create(
        self, *, name: str, email: str, metadata: dict, idempotency_key: str
    ) -> Obj:
        params: dict = {"name": name, "metadata": metadata}
        if email:
            params["email"] = email
        with _mapped_errors("create customer"):
            return _plain(self.v1.customers.create(params, _opts(idempotency_key)))

    def customer_retrieve(self, customer_id: str) -> Obj:
        with _mapped_errors("retrieve customer"):
            return _plain(self.v1.customers.retrieve(customer_id))

    def payment_method_attach(
        self, *, payment_method_id: str, customer_id: str, make_default: bool = True
    ) -> Obj:
        """Attach a payment method (e.g. a test card) to the customer, as its default."""
        with _mapped_errors("attach payment method"):
            pm = _plain(
                self.v1.payment_methods.attach(payment_method_id, {"customer": customer_id})
            )
            if make_default:
                self.v1.customers.update(
                    customer_id, {"invoice_settings": {"default_payment_method": pm["id"]}}
                )
            return pm

    def default_payment_method(self, customer_id: str) -> str | None:
        """The card to charge off-session: the customer's invoice default, else its default
        source, else its first saved card."""
        customer = self.customer_retrieve(customer_id)
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if isinstance(default, dict):
            default = default.get("id")
        if default:
            return default
        source = customer.get("default_source")
        if isinstance(source, dict):
            source = source.get("id")
        if source:
            return source
        with _mapped_errors("list payment methods"):
            cards = _plain(self.v1.payment_methods.list({"customer": customer_id, "type": "card"}))
        data = cards.get("data") or []
        return data[0]["id"] if data else None

    # --- Catalog --------------------------------------------------------------------------------

    def product_ensure(self, *, product_id: str, name: str, metadata: dict) -> Obj:
        """The product with this (our) id, created when missing, renamed when changed."""
        try:
            with _mapped_errors("retrieve product"):
                product = _plain(self.v1.products.retrieve(product_id))
        except StripeObjectNotFound:
            with _mapped_errors("create product"):
                return _plain(
                    self.v1.products.create(
                        {"id": product_id, "name": name, "metadata": metadata},
                        _opts(f"product:{product_id}"),
                    )
                )
        if product.get("name") != name:
            with _mapped_errors("update product"):
                product = _plain(self.v1.products.update(product_id, {"name": name}))
        return product

    def price_ensure(
        self,
        *,
        product_id: str,
        lookup_key: str,
        unit_amount: int,
        currency: str,
        recurring_interval: str | None,
        metadata: dict,
    ) -> Obj | None:
        """An active price of the product with `lookup_key` and exactly this amount, currency and
        interval: the existing one, or a new one that takes the lookup key over (the old price is
        archived). None when the server can't hold one-time prices (legacy plans mode)."""
        if self.legacy_plans:
            return self._plan_ensure(
                product_id=product_id,
                lookup_key=lookup_key,
                unit_amount=unit_amount,
                currency=currency,
                recurring_interval=recurring_interval,
                metadata=metadata,
            )
        with _mapped_errors("find price"):
            found = _plain(
                self.v1.prices.list({"lookup_keys": [lookup_key], "active": True, "limit": 1})
            )
        existing = (found.get("data") or [None])[0]
        if existing is not None:
            interval = (existing.get("recurring") or {}).get("interval")
            if (
                existing.get("unit_amount") == unit_amount
                and existing.get("currency") == currency
                and interval == recurring_interval
                and existing.get("product") == product_id
            ):
                return existing
        params: dict = {
            "product": product_id,
            "unit_amount": unit_amount,
            "currency": currency,
            "lookup_key": lookup_key,
            "transfer_lookup_key": True,
            "metadata": metadata,
        }
        if recurring_interval:
            params["recurring"] = {"interval": recurring_interval}
        key = f"price:{lookup_key}:{unit_amount}:{currency}:{recurring_interval or 'once'}"
        with _mapped_errors("create price"):
            price = _plain(self.v1.prices.create(params, _opts(key)))
        if existing is not None:
            with _mapped_errors("archive price"):
                self.v1.prices.update(existing["id"], {"active": False})
        return price

    def _plan_ensure(
        self,
        *,
        product_id: str,
        lookup_key: str,
        unit_amount: int,
        currency: str,
        recurring_interval: str | None,
        metadata: dict,
    ) -> Obj | None:
        if not recurring_interval:
            return None
        plan_id = f"{lookup_key}-{currency}-{unit_amount}"
        try:
            with _mapped_errors("retrieve plan"):
                return _plain(self.v1.plans.retrieve(plan_id))
        except StripeObjectNotFound:
            with _mapped_errors("create plan"):
                return _plain(
                    self.v1.plans.create(
                        {
                            "id": plan_id,
                            "product": product_id,
                            "amount": unit_amount,
                            "currency": currency,
                            "interval": recurring_interval,
                            "metadata": metadata,
                        },
                        _opts(f"plan:{plan_id}"),
                    )
                )

    # --- Checkout and portal --------------------------------------------------------------------

    def checkout_session_create(self, params: dict, *, idempotency_key: str | None) -> Obj:
        with _mapped_errors("create Checkout session"):
            return _plain(self.v1.checkout.sessions.create(params, _opts(idempotency_key)))

    def portal_session_create(self, *, customer_id: str, return_url: str) -> Obj:
        with _mapped_errors("create Customer Portal session"):
            return _plain(
                self.v1.billing_portal.sessions.create(
                    {"customer": customer_id, "return_url": return_url}
                )
            )

    # --- Subscriptions --------------------------------------------------------------------------

    def _item(self, price_id: str) -> dict:
        return {"plan": price_id} if self.legacy_plans else {"price": price_id}

    def subscription_create(
        self, *, customer_id: str, price_id: str, metadata: dict, idempotency_key: str
    ) -> Obj:
        """A subscription charged to the customer's default card (no Checkout: support/admin
        flows and tests)."""
        params = {"customer": customer_id, "items": [self._item(price_id)], "metadata": metadata}
        with _mapped_errors("create subscription"):
            return _plain(self.v1.subscriptions.create(params, _opts(idempotency_key)))

    def subscription_retrieve(self, subscription_id: str) -> Obj:
        with _mapped_errors("retrieve subscription"):
            return _plain(self.v1.subscriptions.retrieve(subscription_id))

    def subscription_change_price(
        self, *, subscription_id: str, price_id: str, metadata: dict, idempotency_key: str
    ) -> Obj:
        """Move the subscription's (single) item to another price; the prorated difference is
        invoiced at once."""
        sub = self.subscription_retrieve(subscription_id)
        items = (sub.get("items") or {}).get("data") or []
        if not items:
            raise StripeRequestInvalid("The subscription has no item to change.")
        item = {"id": items[0]["id"], **self._item(price_id)}
        params: dict = {"items": [item], "metadata": metadata}
        if not self.legacy_plans:
            params["proration_behavior"] = "always_invoice"
        with _mapped_errors("change subscription plan"):
            return _plain(
                self.v1.subscriptions.update(subscription_id, params, _opts(idempotency_key))
            )

    def subscription_cancel(self, *, subscription_id: str, at_period_end: bool) -> Obj:
        with _mapped_errors("cancel subscription"):
            if at_period_end:
                return _plain(
                    self.v1.subscriptions.update(subscription_id, {"cancel_at_period_end": True})
                )
            return _plain(self.v1.subscriptions.cancel(subscription_id))

    def subscription_resume(self, *, subscription_id: str) -> Obj:
        with _mapped_errors("resume subscription"):
            return _plain(
                self.v1.subscriptions.update(subscription_id, {"cancel_at_period_end": False})
            )

    # --- Invoices -------------------------------------------------------------------------------

    def invoice_create(
        self,
        *,
        customer_id: str,
        description: str,
        metadata: dict,
        default_payment_method: str | None,
        days_until_due: int,
        idempotency_key: str,
    ) -> Obj:
        """A draft invoice for items we add explicitly (never the customer's pending items).
        Charged to `default_payment_method` when given, else sent for payment by email."""
        params: dict = {
            "customer": customer_id,
            "description": description,
            "metadata": metadata,
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "currency": settings.STRIPE_CURRENCY,
        }
        if default_payment_method:
            params["collection_method"] = "charge_automatically"
            params["default_payment_method"] = default_payment_method
        else:
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = days_until_due
        with _mapped_errors("create invoice"):
            return _plain(self.v1.invoices.create(params, _opts(idempotency_key)))

    def invoice_item_create(
        self,
        *,
        customer_id: str,
        invoice_id: str,
        amount_cents: int,
        description: str,
        metadata: dict,
        idempotency_key: str,
    ) -> Obj:
        params = {
            "customer": customer_id,
            "invoice": invoice_id,
            "amount": amount_cents,
            "currency": settings.STRIPE_CURRENCY,
            "description": description,
            "metadata": metadata,
        }
        with _mapped_errors("create invoice item"):
            return _plain(self.v1.invoice_items.create(params, _opts(idempotency_key)))

    def invoice_retrieve(self, invoice_id: str) -> Obj:
        with _mapped_errors("retrieve invoice"):
            return _plain(self.v1.invoices.retrieve(invoice_id))

    def invoice_finalize(self, invoice_id: str, *, idempotency_key: str) -> Obj:
        with _mapped_errors("finalize invoice"):
            return _plain(
                self.v1.invoices.finalize_invoice(
                    invoice_id, {"auto_advance": True}, _opts(idempotency_key)
                )
            )

    def invoice_pay(self, invoice_id: str, *, idempotency_key: str) -> Obj:
        with _mapped_errors("pay invoice"):
            return _plain(self.v1.invoices.pay(invoice_id, None, _opts(idempotency_key)))

    def invoices_list(self, *, customer_id: str, limit: int = 12) -> list[Obj]:
        with _mapped_errors("list invoices"):
            page = _plain(self.v1.invoices.list({"customer": customer_id, "limit": limit}))
        return list(page.get("data") or [])

    # --- Payments -------------------------------------------------------------------------------

    def payment_intent_off_session(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount_cents: int,
        metadata: dict,
        idempotency_key: str,
    ) -> Obj:
        """Charge a saved card with the customer absent (confirm at once, off_session). A decline
        or a card that needs authentication raises PaymentDeclined."""
        params = {
            "amount": amount_cents,
            "currency": settings.STRIPE_CURRENCY,
            "customer": customer_id,
            "payment_method": payment_method_id,
            # Cards only: no redirect-based method (which would need a return_url) off-session.
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": metadata,
        }
        with _mapped_errors("charge saved card"):
            return _plain(self.v1.payment_intents.create(params, _opts(idempotency_key)))

    def refund_create(
        self, *, payment_intent_id: str, amount_cents: int | None, idempotency_key: str
    ) -> Obj:
        params: dict = {"payment_intent": payment_intent_id}
        if amount_cents is not None:
            params["amount"] = amount_cents
        with _mapped_errors("refund"):
            return _plain(self.v1.refunds.create(params, _opts(idempotency_key)))


# --- Webhook signatures (no API key needed) ------------------------------------------------------


def verify_webhook_signature(
    *, payload: bytes, header: str | None, secret: str, tolerance_s: int | None
) -> None:
    """Check `Stripe-Signature: t=…,v1=…` (HMAC-SHA256 of "t.payload" with the endpoint secret,
    timestamp within `tolerance_s`). Raises InvalidSignature."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSignature("The body is not UTF-8.") from exc
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance_s or None)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(str(exc.user_message or exc)) from exc


def webhook_signature_header(*, payload: bytes | str, secret: str, timestamp: int) -> str:
    """The header Stripe would send for `payload` (tests and tooling sign events with it)."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=timestamp)


# --- The configured gateway -------------------------------------------------------------------

_lock = threading.Lock()
_cached: dict[tuple, StripeGateway] = {}


def get_gateway() -> StripeGateway:
    """The gateway configured by the STRIPE_* settings (one per configuration)."""
    config = (
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.STRIPE_MAX_NETWORK_RETRIES,
        settings.STRIPE_TIMEOUT_S,
        settings.STRIPE_LEGACY_PLANS,
    )
    with _lock:
        gateway = _cached.get(config)
        if gateway is None:
            gateway = StripeGateway(
                api_key=config[0],
                api_base=config[1],
                max_network_retries=config[2],
                timeout_s=config[3],
                legacy_plans=config[4],
            )
            _cached.clear()
            _cached[config] = gateway
        return gateway
