"""An in-memory stand-in for `credits.billing.gateway.StripeGateway`, for what localstripe can't
do (Checkout, standalone invoices): same methods, Stripe-like objects, and Stripe's idempotency
rule (a key replays its first result for 24 h). It records every call."""

from __future__ import annotations

import copy
import itertools
import threading
import time

from credits.billing.errors import PaymentDeclined, StripeObjectNotFound, StripeUnavailable

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):06d}"


class FakeGateway:
    legacy_plans = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.customers: dict[str, dict] = {}
        self.invoices: dict[str, dict] = {}
        self.invoice_items: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.payment_intents: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.products: dict[str, dict] = {}
        self.prices: dict[str, dict] = {}
        self._idempotent: dict[str, dict] = {}
        self._lock = threading.RLock()
        self.decline_cards: set[str] = set()
        self.fail_next: dict[str, Exception] = {}

    # --- helpers --------------------------------------------------------------------------------

    def _call(self, name: str, key: str | None, params: dict, make):
        with self._lock:
            self.calls.append((name, copy.deepcopy(params)))
            if name in self.fail_next:
                raise self.fail_next.pop(name)
            if key is not None and key in self._idempotent:
                return copy.deepcopy(self._idempotent[key])
            result = make()
            if key is not None:
                self._idempotent[key] = copy.deepcopy(result)
            return copy.deepcopy(result)

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    def params(self, name: str) -> list[dict]:
        return [params for call, params in self.calls if call == name]

    # --- customers ------------------------------------------------------------------------------

    def customer_create(self, *, name, email, metadata, idempotency_key):
        def make():
            customer = {
                "id": _id("cus"),
                "object": "customer",
                "name": name,
                "email": email or None,
                "metadata": metadata,
                "invoice_settings": {"default_payment_method": None},
                "default_source": None,
            }
            self.customers[customer["id"]] = customer
            return customer

        return self._call("customer_create", idempotency_key, {"name": name}, make)

    def customer_retrieve(self, customer_id):
        if customer_id not in self.customers:
            raise StripeObjectNotFound(customer_id)
        return copy.deepcopy(self.customers[customer_id])

    def payment_method_attach(self, *, payment_method_id, customer_id, make_default=True):
        self.customers.setdefault(
            customer_id,
            {"id": customer_id, "invoice_settings": {"default_payment_method": None}},
        )
        if make_default:
            self.customers[customer_id]["invoice_settings"]["default_payment_method"] = (
                payment_method_id
            )
        return {"id": payment_method_id, "customer": customer_id}

    def default_payment_method(self, customer_id):
        customer = self.customers.get(customer_id) or {}
        return (customer.get("invoice_settings") or {}).get("default_payment_method")

    # --- catalog --------------------------------------------------------------------------------

    def product_ensure(self, *, product_id, name, metadata):
        product = self.products.setdefault(product_id, {"id": product_id, "name": name})
        product["name"] = name
        return dict(product)

    def price_ensure(
        self, *, product_id, lookup_key, unit_amount, currency, recurring_interval, metadata
    ):
        price = self.prices.get(lookup_key)
        if price is None or price["unit_amount"] != unit_amount:
            price = {
                "id": _id("price"),
                "product": product_id,
                "unit_amount": unit_amount,
                "currency": currency,
                "lookup_key": lookup_key,
            }
            self.prices[lookup_key] = price
        return dict(price)

    # --- checkout -------------------------------------------------------------------------------

    def checkout_session_create(self, params, *, idempotency_key):
        def make():
            session = {
                "id": _id("cs_test"),
                "object": "checkout.session",
                "url": "https://checkout.stripe.test/pay/session",
                **copy.deepcopy(params),
            }
            session["url"] = f"https://checkout.stripe.test/pay/{session['id']}"
            self.sessions[session["id"]] = session
            return session

        return self._call("checkout_session_create", idempotency_key, params, make)

    def portal_session_create(self, *, customer_id, return_url):
        return self._call(
            "portal_session_create",
            None,
            {"customer": customer_id, "return_url": return_url},
            lambda: {"id": _id("bps"), "url": f"https://billing.stripe.test/p/{customer_id}"},
        )

    # --- subscriptions --------------------------------------------------------------------------

    def _subscription(self, subscription_id, price_id, customer_id, **extra):
        now = int(time.time())
        return {
            "id": subscription_id,
            "object": "subscription",
            "customer": customer_id,
            "status": "active",
            "cancel_at_period_end": False,
            "items": {
                "data": [
                    {
                        "id": f"si_{subscription_id}",
                        "price": {"id": price_id},
                        "current_period_start": now,
                        "current_period_end": now + 30 * 86400,
                    }
                ]
            },
            "metadata": {},
            **extra,
        }

    def subscription_retrieve(self, subscription_id):
        if subscription_id not in self.subscriptions:
            raise StripeObjectNotFound(subscription_id)
        return copy.deepcopy(self.subscriptions[subscription_id])

    def subscription_change_price(self, *, subscription_id, price_id, metadata, idempotency_key):
        def make():
            sub = self.subscriptions[subscription_id]
            sub["items"]["data"][0]["price"] = {"id": price_id}
            return sub

        return self._call("subscription_change_price", idempotency_key, {"price": price_id}, make)

    def subscription_cancel(self, *, subscription_id, at_period_end):
        def make():
            sub = self.subscriptions.get(subscription_id)
            if sub is None:
                raise StripeObjectNotFound(subscription_id)
            if at_period_end:
                sub["cancel_at_period_end"] = True
            else:
                sub["status"] = "canceled"
            return sub

        return self._call(
            "subscription_cancel", None, {"id": subscription_id, "end": at_period_end}, make
        )

    def subscription_resume(self, *, subscription_id):
        sub = self.subscriptions[subscription_id]
        sub["cancel_at_period_end"] = False
        return copy.deepcopy(sub)

    # --- invoices -------------------------------------------------------------------------------

    def invoice_create(
        self,
        *,
        customer_id,
        description,
        metadata,
        default_payment_method,
        days_until_due,
        idempotency_key,
    ):
        def make():
            invoice = {
                "id": _id("in"),
                "object": "invoice",
                "customer": customer_id,
                "description": description,
                "metadata": metadata,
                "status": "draft",
                "collection_method": (
                    "charge_automatically" if default_payment_method else "send_invoice"
                ),
                "default_payment_method": default_payment_method,
                "lines": {"object": "list", "data": []},
                "amount_due": 0,
                "hosted_invoice_url": None,
            }
            self.invoices[invoice["id"]] = invoice
            return invoice

        return self._call("invoice_create", idempotency_key, {"metadata": metadata}, make)

    def invoice_item_create(
        self, *, customer_id, invoice_id, amount_cents, description, metadata, idempotency_key
    ):
        def make():
            item = {
                "id": _id("ii"),
                "object": "invoiceitem",
                "customer": customer_id,
                "invoice": invoice_id,
                "amount": amount_cents,
                "description": description,
                "metadata": metadata,
            }
            self.invoice_items[item["id"]] = item
            invoice = self.invoices[invoice_id]
            invoice["lines"]["data"].append(
                {"id": _id("il"), "amount": amount_cents, "metadata": metadata}
            )
            invoice["amount_due"] += amount_cents
            return item

        return self._call(
            "invoice_item_create",
            idempotency_key,
            {"invoice": invoice_id, "amount": amount_cents},
            make,
        )

    def invoice_retrieve(self, invoice_id):
        if invoice_id not in self.invoices:
            raise StripeObjectNotFound(invoice_id)
        return copy.deepcopy(self.invoices[invoice_id])

    def invoice_finalize(self, invoice_id, *, idempotency_key):
        def make():
            invoice = self.invoices[invoice_id]
            invoice["status"] = "open"
            invoice["hosted_invoice_url"] = f"https://invoice.stripe.test/{invoice_id}"
            return invoice

        return self._call("invoice_finalize", idempotency_key, {"id": invoice_id}, make)

    def invoice_pay(self, invoice_id, *, idempotency_key):
        def make():
            invoice = self.invoices[invoice_id]
            if invoice.get("default_payment_method") in self.decline_cards:
                raise PaymentDeclined("pay invoice: Your card was declined.")
            invoice["status"] = "paid"
            invoice["amount_paid"] = invoice["amount_due"]
            return invoice

        return self._call("invoice_pay", idempotency_key, {"id": invoice_id}, make)

    def invoices_list(self, *, customer_id, limit=12):
        return [copy.deepcopy(i) for i in self.invoices.values() if i["customer"] == customer_id]

    # --- payments -------------------------------------------------------------------------------

    def payment_intent_off_session(
        self, *, customer_id, payment_method_id, amount_cents, metadata, idempotency_key
    ):
        def make():
            if payment_method_id in self.decline_cards:
                raise PaymentDeclined("charge saved card: Your card was declined.")
            intent = {
                "id": _id("pi"),
                "object": "payment_intent",
                "amount": amount_cents,
                "customer": customer_id,
                "payment_method": payment_method_id,
                "metadata": metadata,
                "status": "succeeded",
                "latest_charge": _id("ch"),
            }
            self.payment_intents[intent["id"]] = intent
            return intent

        return self._call(
            "payment_intent_off_session",
            idempotency_key,
            {"amount": amount_cents, "metadata": metadata},
            make,
        )


def unavailable() -> StripeUnavailable:
    return StripeUnavailable("Stripe is down (test)")
