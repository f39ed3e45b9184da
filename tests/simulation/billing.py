"""Billing under faults, in about one seed in ten: the first organization has auto top-up on
(a saved card with the recording fake Stripe of tests/billing, a threshold just above its
balance), and the seed adds two steps: the top-up check (`auto_top_up_check`; Stripe may be
unreachable, leaving the purchase pending for `retry_pending`) and a Stripe webhook delivery
(`payment_intent.succeeded` for each charge, taken out of order, sometimes sent twice or again
later, its handler sometimes losing its connection so the event fails and `retry_failed`
processes it again). Settling delivers every event and runs both retries.

Invariants (`check`): every event id stored once and processed; at most one top-up purchase
per threshold crossing (one per seed: a 500-credit pack lifts the balance far above what the
seed's jobs spend) and at most one Stripe charge per purchase; each purchase paid with exactly
one grant, or failed with none; and the money invariants of `invariants.check` count the
grants.

The seeds are picked by a random generator of their own, as for `through_api`: every other
seed is exactly what it was.
"""

from __future__ import annotations

import random
from decimal import Decimal

from django.db import OperationalError

from credits.billing import gateway as gw
from credits.billing import topup, webhooks
from credits.billing.errors import StripeUnavailable
from credits.billing.models import (
    CreditPack,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
)
from credits.models import CreditGrant, GrantSource
from tests.billing import stripe_events as se
from tests.billing.fake_gateway import FakeGateway

BILLING_SHARE = 0.1
SETTINGS = {
    "STRIPE_SECRET_KEY": "sk_test_simulation",
    "STRIPE_WEBHOOK_SECRET": se.SECRET,
    "STRIPE_API_BASE": "",
    "STRIPE_MAX_NETWORK_RETRIES": 0,
}


def drives_billing(seed: int) -> bool:
    return random.Random(f"billing-{seed}").random() < BILLING_SHARE


class _FlakyGateway(FakeGateway):
    """The fake Stripe, unreachable when the seed says so."""

    def __init__(self, sim):
        super().__init__()
        self.sim = sim

    def payment_intent_off_session(self, **kwargs):
        if self.sim.chance("stripe_down"):
            self.sim.log("  stripe unreachable")
            raise StripeUnavailable("Stripe is down (simulated)")
        return super().payment_intent_off_session(**kwargs)


class Billing:
    def __init__(self, sim, patches):
        from accounts.models import Membership, Role

        self.sim = sim
        self.gateway = _FlakyGateway(sim)
        patches.set(gw, "get_gateway", lambda: self.gateway)
        # A connection lost while a webhook's handler records the payment: the event fails
        # (500) and is processed again later.
        patches.set(
            topup,
            "payment_intent_update",
            sim.db_fault("webhook_handler", topup.payment_intent_update),
        )
        sim.p.update(stripe_down=0.3, webhook_handler=0.3, dup_event=0.4)
        self.org = sim.world.orgs[0]
        owner = Membership.objects.filter(organization=self.org, role=Role.OWNER).first().user
        customer = self.gateway.customer_create(
            name="Simulation", email="", metadata={}, idempotency_key=f"sim-{sim.seed}"
        )
        self.gateway.payment_method_attach(payment_method_id="pm_visa", customer_id=customer["id"])
        StripeCustomer.objects.create(organization=self.org, stripe_customer_id=customer["id"])
        available = topup.available_credits(self.org.pk)
        topup.auto_top_up_configure(
            organization=self.org,
            actor=owner,
            enabled=True,
            threshold_credits=str(available + Decimal(1)),
            pack=CreditPack.objects.get(slug="credits-500"),
        )
        self.events: list[dict] = []  # waiting to be delivered
        self.sent: set[str] = set()  # event ids delivered at least once
        self.seen: set[str] = set()  # PaymentIntents an event was made for

    def steps(self) -> list:
        return [self.top_up_check, self.deliver] * (2 if self.events else 1)

    def _new_events(self) -> None:
        """Stripe tells about each succeeded charge (sometimes twice)."""
        for intent_id, intent in sorted(self.gateway.payment_intents.items()):
            if intent_id in self.seen:
                continue
            self.seen.add(intent_id)
            event = se.event(
                "payment_intent.succeeded",
                dict(intent),
                event_id=f"evt_sim_{self.sim.seed}_{len(self.seen)}",
                created=self.sim.now().timestamp(),
            )
            self.events.append(event)
            if self.sim.chance("dup_event"):
                self.events.append(event)

    def top_up_check(self) -> None:
        try:
            purchase = topup.auto_top_up_check(organization_id=self.org.pk)
        except OperationalError:  # lost recording the charge: the purchase stays pending
            self.sim.log("top-up check: connection lost")
            return
        except Exception as exc:
            self.sim.crashed("auto top-up check", str(self.org.pk), exc)
            return
        self.sim.log(f"top-up check -> {purchase.status if purchase else 'nothing'}")
        self._new_events()

    def deliver(self) -> None:
        if not self.events:
            return
        event = self.events.pop(self.sim.rng.randrange(len(self.events)))  # out of order
        if self.sim.chance("dup_event"):  # delivered again later
            self.events.append(event)
        self._receive(event)

    def _receive(self, event: dict) -> None:
        body = se.body_of(event)
        signature = se.sign(body, timestamp=int(self.sim.now().timestamp()))
        outcome = webhooks.receive(body=body, signature=signature)
        self.sent.add(event["id"])
        number = event["id"].rsplit("_", 1)[-1]
        self.sim.log(f"webhook #{number} -> {outcome.status_code} {outcome.body.get('status')}")
        if outcome.status_code not in (200, 500):
            self.sim.crashes.append(f"webhook #{number} answered {outcome.status_code}")

    def settle(self) -> None:
        """Charge what is pending, deliver every event, retry the failed ones — skipped (one
        statement) when the seed never reached billing: no charge, no event, no purchase."""
        if not (
            self.gateway.payment_intents
            or self.events
            or Purchase.objects.filter(organization=self.org).exists()
        ):
            self.sim.log("billing: nothing to settle")
            return
        for _ in range(4):
            self.sim.advance(600)  # past the retries' backoff
            topup.retry_pending()
            self._new_events()
            while self.events:
                self._receive(self.events.pop(0))
            webhooks.retry_failed()
            self.sim.committed()

    def check(self) -> list[str]:
        v = []
        events = dict(
            StripeEvent.objects.filter(event_id__in=self.sent).values_list("event_id", "status")
        )
        if len(events) != len(self.sent):
            v.append(f"{len(self.sent)} webhook events sent, {len(events)} stored")
        for event_id, status in events.items():
            if status not in (StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED):
                v.append(f"webhook event {event_id} left {status}")
        purchases = list(
            Purchase.objects.filter(organization=self.org, kind=PurchaseKind.AUTO_TOP_UP)
        )
        if len(purchases) > 1:
            v.append(f"{len(purchases)} auto top-ups for one threshold crossing")
        if len(self.gateway.payment_intents) > len(purchases):
            v.append(
                f"{len(self.gateway.payment_intents)} Stripe charges for {len(purchases)} top-up(s)"
            )
        for purchase in purchases:
            grants = CreditGrant.objects.filter(
                account__organization=self.org,
                source=GrantSource.PURCHASE,
                reference__endswith=f" #{purchase.pk}",
            ).count()
            paid = purchase.status == PurchaseStatus.PAID
            if purchase.status == PurchaseStatus.PENDING:
                v.append(f"top-up {purchase.pk} still pending after settling")
            if grants != (1 if paid else 0) or paid != bool(purchase.grant_id):
                v.append(f"top-up {purchase.pk} {purchase.status} with {grants} grant(s)")
        return v
