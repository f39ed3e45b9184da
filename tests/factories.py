"""factory_boy factories shared by the suite. Organizations are created through the service so
they get their subscription (and, later, credit account) exactly as in production."""

from __future__ import annotations

import factory

from accounts import services
from accounts.models import Membership, Plan, Role, User


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def ensure_default_plans() -> None:
    """The spec's plans, as the data migration creates them. Transactional tests flush the
    database between tests, so they need this again."""
    services.plans_ensure_defaults()


def make_org(
    *,
    slug: str | None = None,
    plan: str = "starter",
    owner: User | None = None,
    name: str | None = None,
):
    """An organization on `plan` (by slug), owned by `owner` (a new user when omitted)."""
    ensure_default_plans()
    owner = owner or UserFactory()
    return services.organization_create(
        name=name or (slug or "Org").title(),
        slug=slug,
        plan=Plan.objects.get(slug=plan),
        owner=owner,
    )


def add_member(org, *, role: str = Role.MEMBER, user: User | None = None) -> Membership:
    user = user or UserFactory()
    return Membership.objects.create(organization=org, user=user, role=role)


def account_of(org):
    from credits.models import CreditAccount

    return CreditAccount.objects.get(organization=org)


def make_account(*, plan: str = "starter", credits=None, slug: str | None = None):
    """A funded credit account on `plan`. `credits` replaces the plan grant with a purchase
    grant of that size (the plan grant is expired away) when given."""
    from decimal import Decimal

    from credits import ledger
    from credits.models import CreditGrant

    org = make_org(slug=slug, plan=plan)
    account = account_of(org)
    if credits is not None:
        for grant in CreditGrant.objects.filter(account=account, remaining__gt=0):
            ledger.adjust(
                account=account,
                amount=-grant.remaining,
                reason="test setup",
                idempotency_key=f"setup-clear-{grant.pk}",
            )
        if Decimal(str(credits)) > 0:
            ledger.grant_create(
                account=account,
                amount=credits,
                source="purchase",
                idempotency_key=f"setup-{account.pk}",
            )
        account.refresh_from_db()
    return account


def make_pool(slug: str = "a100", *, gpu_type: str = "A100", rate: str = "3.60"):
    from datetime import UTC, datetime
    from decimal import Decimal

    from infra_costs.models import NodePool, PoolRate

    pool, created = NodePool.objects.get_or_create(slug=slug, defaults={"gpu_type": gpu_type})
    if created:
        PoolRate.objects.create(
            pool=pool,
            hourly_rate_usd=Decimal(rate),
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
    return pool


def make_ai_model(
    slug: str = "sdxl", *, pool=None, credits: str = "5", backend_config=None, **fields
):
    from datetime import UTC, datetime

    from generations.models import AIModel, CreditRate

    pool = pool or make_pool()
    model = AIModel.objects.create(
        slug=slug,
        name=fields.pop("name", slug.upper()),
        pool=pool,
        backend_config=backend_config if backend_config is not None else {"mean_s": 0.01},
        **fields,
    )
    CreditRate.objects.create(
        model=model,
        credits=credits,
        reason="test price",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    return model
