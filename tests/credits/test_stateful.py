"""Hypothesis drives random sequences of grant / hold / capture / release / expire / adjust
against the real ledger on PostgreSQL and against a plain in-memory model of the spec's rules;
after every step balances, held amounts, each grant's remaining and the ledger invariants must
agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from config.errors import InsufficientCredits
from credits import ledger, services
from credits.models import DEFAULT_PRIORITY, CreditAccount, CreditGrant
from credits.selectors import ledger_drift
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db

amounts = st.integers(min_value=1, max_value=40_000).map(lambda n: D(n) / 1000)  # 0.001–40


@dataclass
class MGrant:
    pk: int
    order: int
    priority: int
    expires_at: datetime | None
    remaining: D


@dataclass
class MHold:
    pk: int
    amount: D
    taken: list[tuple[int | None, D]] = field(default_factory=list)  # (grant pk | None, amount)


class LedgerModel:
    """The spec's rules, written the slow obvious way."""

    def __init__(self, overage_limit: D):
        self.balance = D(0)
        self.held = D(0)
        self.overage_limit = overage_limit
        self.grants: dict[int, MGrant] = {}

    def burn_order(self, now):
        live = [
            g
            for g in self.grants.values()
            if g.remaining > 0 and (g.expires_at is None or g.expires_at > now)
        ]
        return sorted(
            live,
            key=lambda g: (
                g.priority,
                g.expires_at is None,
                g.expires_at or datetime.max.replace(tzinfo=now.tzinfo),
                g.order,
            ),
        )

    def can_hold(self, amount):
        return self.balance - self.held - amount >= -self.overage_limit

    def draw(self, amount, now) -> list[tuple[int | None, D]]:
        taken, left = [], amount
        for g in self.burn_order(now):
            if left <= 0:
                break
            t = min(g.remaining, left)
            g.remaining -= t
            left -= t
            taken.append((g.pk, t))
        if left > 0:
            taken.append((None, left))
        return taken

    def give_back(self, hold: MHold, amount: D, now):
        funded = sorted(
            (t for t in hold.taken if t[0] is not None),
            key=lambda t: (
                self.grants[t[0]].priority,
                self.grants[t[0]].expires_at is None,
                self.grants[t[0]].expires_at or datetime.max.replace(tzinfo=now.tzinfo),
                self.grants[t[0]].order,
            ),
            reverse=True,
        )
        order = [t for t in hold.taken if t[0] is None] + funded
        left = amount
        self.held -= amount
        for gpk, t in order:
            if left <= 0:
                break
            back = min(t, left)
            left -= back
            if gpk is not None:
                g = self.grants[gpk]
                g.remaining += back
                if g.expires_at is not None and g.expires_at <= now:
                    self.balance -= g.remaining
                    g.remaining = D(0)

    def expire(self, now):
        for g in self.grants.values():
            if g.expires_at is not None and g.expires_at <= now and g.remaining > 0:
                self.balance -= g.remaining
                g.remaining = D(0)


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self):
        super().__init__()
        org = make_org(plan="starter")
        self.account = account_of(org)
        # Start from an empty account: expire the plan grant into the past of our clock.
        self.now = self.account.organization.subscription.current_period_end + timedelta(days=1)
        services.grants_expire_due(now=self.now)
        ledger.account_set_overage_limit(account=self.account, overage_limit=D(25))
        self.model = LedgerModel(overage_limit=D(25))
        self.model.balance = CreditAccount.objects.get(pk=self.account.pk).balance
        self.seq = 0
        self.keys = 0

    def key(self, prefix):
        self.keys += 1
        return f"{prefix}-{self.keys}"

    def tick(self, minutes=1):
        self.now += timedelta(minutes=minutes)

    # Few sources and mostly expiring grants, so equal priorities with different expiries
    # (the subtle part of the burn-down order) come up often.
    @rule(
        amount=amounts,
        source=st.sampled_from(["plan", "plan", "promo", "purchase"]),
        expires_in=st.one_of(
            st.none(),
            st.integers(min_value=1, max_value=30),
            st.integers(min_value=1, max_value=30),
        ),
    )
    def grant(self, amount, source, expires_in):
        self.tick()
        expires_at = self.now + timedelta(minutes=expires_in) if expires_in else None
        g = ledger.grant_create(
            account=self.account,
            amount=amount,
            source=source,
            idempotency_key=self.key("grant"),
            expires_at=expires_at,
            now=self.now,
        )
        self.seq += 1
        self.model.grants[g.pk] = MGrant(
            g.pk, self.seq, DEFAULT_PRIORITY[source], expires_at, amount
        )
        self.model.balance += amount

    @rule(target=holds, amount=amounts)
    def hold(self, amount):
        self.tick()
        expected = self.model.can_hold(amount)
        try:
            h = ledger.hold_create(
                account=self.account,
                amount=amount,
                key=self.key("job"),
                now=self.now,
                expires_at=self.now + timedelta(days=365),
            )
        except InsufficientCredits:
            assert not expected, "ledger refused a hold the model allows"
            return None
        assert expected, "ledger allowed a hold the model refuses"
        self.model.held += amount
        mh = MHold(h.pk, amount, self.model.draw(amount, self.now))
        assert h.unfunded == sum((t for g, t in mh.taken if g is None), D(0))
        return (h, mh)

    @rule(pair=consumes(holds), fraction=st.sampled_from([None, D("0.5"), D(1)]))
    def capture(self, pair, fraction):
        if pair is None:
            return
        self.tick()
        h, mh = pair
        charge = (
            mh.amount
            if fraction is None
            else max(D("0.001"), (mh.amount * fraction).quantize(D("0.001")))
        )
        ledger.hold_capture(hold=h, amount=None if fraction is None else charge, now=self.now)
        if charge < mh.amount:
            self.model.give_back(mh, mh.amount - charge, self.now)
        self.model.held -= charge
        self.model.balance -= charge

    @rule(pair=consumes(holds))
    def release(self, pair):
        if pair is None:
            return
        self.tick()
        h, mh = pair
        ledger.hold_release(hold=h, now=self.now)
        self.model.give_back(mh, mh.amount, self.now)

    @rule(minutes=st.integers(min_value=1, max_value=20))
    def expire(self, minutes):
        self.tick(minutes)
        services.grants_expire_due(now=self.now)
        self.model.expire(self.now)

    @rule(amount=amounts, negative=st.booleans())
    def adjust(self, amount, negative):
        self.tick()
        signed = -amount if negative else amount
        entry = ledger.adjust(
            account=self.account,
            amount=signed,
            reason="stateful test",
            idempotency_key=self.key("adj"),
            now=self.now,
        )
        if negative:
            self.model.balance -= amount
            self.model.draw(amount, self.now)
        else:
            self.seq += 1
            self.model.grants[entry.grant_id] = MGrant(
                entry.grant_id, self.seq, DEFAULT_PRIORITY["adjustment"], None, amount
            )
            self.model.balance += amount

    @invariant()
    def agrees_with_model(self):
        account = CreditAccount.objects.get(pk=self.account.pk)
        assert account.balance == self.model.balance
        assert account.held == self.model.held
        for g in CreditGrant.objects.filter(account=account):
            if g.pk in self.model.grants:
                assert g.remaining == self.model.grants[g.pk].remaining, g
            else:
                assert g.remaining == 0  # the expired plan grant of the setup
        assert ledger_drift(account_ids=[account.pk]) == []


def test_ledger_matches_the_model_under_random_operations():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
