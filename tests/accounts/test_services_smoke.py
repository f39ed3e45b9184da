import pytest

from accounts.models import Membership, Role, Subscription
from tests.factories import make_org

pytestmark = pytest.mark.django_db


def test_organization_create_makes_owner_and_subscription():
    org = make_org(slug="acme", plan="creator")
    sub = Subscription.objects.get(organization=org)
    assert sub.plan.slug == "creator"
    assert sub.current_period_end > sub.current_period_start
    assert Membership.objects.get(organization=org).role == Role.OWNER
