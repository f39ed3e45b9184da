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


def make_org(*, slug: str | None = None, plan: str = "starter", owner: User | None = None,
             name: str | None = None):
    """An organization on `plan` (by slug), owned by `owner` (a new user when omitted)."""
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
