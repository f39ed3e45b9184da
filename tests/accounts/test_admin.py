"""Django admin for accounts: every page loads, keys are only revoked (never created, never
shown), plan changes go through the service, the audit log is read-only."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from accounts import services
from accounts.models import (
    APIKey,
    AuditEvent,
    Membership,
    Organization,
    Plan,
    Role,
    Subscription,
    User,
)
from tests.factories import UserFactory, make_org

pytestmark = pytest.mark.django_db

MODELS = [User, Organization, Membership, Plan, Subscription, APIKey, AuditEvent]


@pytest.fixture
def superuser():
    return User.objects.create_superuser(email="root@example.com", password="pw-root-123")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="starter")


@pytest.fixture
def acme_key(acme):
    return services.api_key_create(organization=acme, name="ci", actor=None)


def url(model, view, *args):
    return reverse(f"admin:accounts_{model._meta.model_name}_{view}", args=args)


def test_every_accounts_model_is_registered():
    for model in MODELS:
        assert model in admin.site._registry, model


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_loads_for_superuser(staff_client, acme_key, model):
    assert staff_client.get(url(model, "changelist")).status_code == 200
    assert staff_client.get(url(model, "changelist"), {"q": "acme"}).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_change_page_loads_for_superuser(staff_client, acme_key, model):
    obj = model.objects.first()
    assert staff_client.get(url(model, "change", obj.pk)).status_code == 200


def test_changelist_filters_work(staff_client, acme_key):
    assert staff_client.get(url(APIKey, "changelist"), {"status": "active"}).status_code == 200
    assert staff_client.get(url(APIKey, "changelist"), {"status": "revoked"}).status_code == 200
    plan = Plan.objects.get(slug="starter")
    response = staff_client.get(
        url(Organization, "changelist"), {"subscription__plan__id__exact": plan.pk}
    )
    assert response.status_code == 200
    assert b"acme" in response.content


def test_user_can_be_added_with_email_and_password(staff_client):
    assert staff_client.get(url(User, "add")).status_code == 200
    response = staff_client.post(
        url(User, "add"),
        {
            "email": "New.Person@Example.com",
            "usable_password": "true",
            "password1": "a-Long-password-42",
            "password2": "a-Long-password-42",
        },
    )
    assert response.status_code == 302, response.content
    user = User.objects.get(email="new.person@example.com")
    assert user.check_password("a-Long-password-42")


def test_user_add_refuses_an_email_differing_only_in_case(staff_client):
    UserFactory(email="taken@example.com")
    response = staff_client.post(
        url(User, "add"),
        {"email": "TAKEN@example.com", "usable_password": "false"},
    )
    assert response.status_code == 200
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


def test_api_key_cannot_be_added_or_deleted_in_admin(staff_client, superuser, acme_key):
    request = RequestFactory().get("/")
    request.user = superuser
    key_admin = admin.site._registry[APIKey]
    assert key_admin.has_add_permission(request) is False
    assert key_admin.has_delete_permission(request, acme_key[0]) is False
    assert staff_client.get(url(APIKey, "add")).status_code == 403


def test_api_key_page_never_shows_the_hash_or_secret(staff_client, acme_key):
    key, raw = acme_key
    for page in (
        url(APIKey, "changelist"),
        url(APIKey, "change", key.pk),
        url(Organization, "change", key.organization_id),
    ):
        content = staff_client.get(page).content.decode()
        assert key.hashed_key not in content
        assert raw not in content
    assert f"gpuc_{key.prefix}_" in staff_client.get(url(APIKey, "changelist")).content.decode()


def test_api_key_fields_cannot_be_edited(staff_client, acme_key):
    key, _ = acme_key
    staff_client.post(url(APIKey, "change", key.pk), {"name": "renamed", "revoked_at": ""})
    key.refresh_from_db()
    assert key.name == "ci"


def test_revoke_action_revokes_and_audits_the_acting_admin(staff_client, superuser, acme):
    keys = [
        services.api_key_create(organization=acme, name=f"k{i}", actor=None)[0] for i in range(3)
    ]
    response = staff_client.post(
        url(APIKey, "changelist"),
        {"action": "revoke_selected", "_selected_action": [keys[0].pk, keys[1].pk]},
    )
    assert response.status_code == 302
    for key in keys:
        key.refresh_from_db()
    assert keys[0].revoked_at and keys[1].revoked_at
    assert keys[2].revoked_at is None
    events = AuditEvent.objects.filter(action="api_key.revoked")
    assert {e.target_id for e in events} == {str(keys[0].pk), str(keys[1].pk)}
    assert all(e.actor == superuser and e.organization == acme for e in events)
    assert all(e.data["via"] == "admin" for e in events)


def test_revoke_action_skips_already_revoked_keys(staff_client, acme_key):
    key, _ = acme_key
    services.api_key_revoke(api_key=key, actor=None)
    key.refresh_from_db()
    revoked_at = key.revoked_at
    staff_client.post(
        url(APIKey, "changelist"), {"action": "revoke_selected", "_selected_action": [key.pk]}
    )
    key.refresh_from_db()
    assert key.revoked_at == revoked_at
    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_audit_log_is_read_only(staff_client, superuser, acme):
    request = RequestFactory().get("/")
    request.user = superuser
    audit_admin = admin.site._registry[AuditEvent]
    event = AuditEvent.objects.first()
    assert audit_admin.has_add_permission(request) is False
    assert audit_admin.has_change_permission(request, event) is False
    assert audit_admin.has_delete_permission(request, event) is False
    assert audit_admin.has_view_permission(request, event) is True
    assert staff_client.get(url(AuditEvent, "add")).status_code == 403


def test_organizations_are_not_added_in_admin(staff_client):
    assert staff_client.get(url(Organization, "add")).status_code == 403


def test_changing_plan_in_admin_starts_a_period_through_the_service(staff_client, superuser, acme):
    sub = acme.subscription
    studio = Plan.objects.get(slug="studio")
    form = {
        "plan": studio.pk,
        "status": sub.status,
        "current_period_start_0": sub.current_period_start.strftime("%Y-%m-%d"),
        "current_period_start_1": sub.current_period_start.strftime("%H:%M:%S"),
        "current_period_end_0": sub.current_period_end.strftime("%Y-%m-%d"),
        "current_period_end_1": sub.current_period_end.strftime("%H:%M:%S"),
        "stripe_customer_id": "",
        "stripe_subscription_id": "",
    }
    response = staff_client.post(url(Subscription, "change", sub.pk), form)
    assert response.status_code == 302, response.content
    sub.refresh_from_db()
    assert sub.plan == studio
    event = AuditEvent.objects.filter(action="subscription.started").latest("id")
    assert event.actor == superuser
    assert event.data["plan"] == "studio"


def test_plan_columns_are_editable(staff_client):
    plan = Plan.objects.get(slug="starter")
    response = staff_client.get(url(Plan, "change", plan.pk))
    form = response.context["adminform"].form
    for field in (
        "monthly_price_usd",
        "monthly_credits",
        "overage_enabled",
        "overage_cap",
        "overage_price_usd",
        "daily_generation_cap",
        "max_concurrent_jobs",
        "api_rate_limit_per_min",
        "queue_priority",
        "api_access",
    ):
        assert field in form.fields, field


def test_membership_admin_keeps_the_last_owner(staff_client, acme):
    owner = Membership.objects.get(organization=acme, role=Role.OWNER)
    response = staff_client.post(
        url(Membership, "change", owner.pk),
        {"organization": acme.pk, "user": owner.user_id, "role": Role.MEMBER},
    )
    assert response.status_code == 200
    assert b"at least one owner" in response.content
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_non_staff_cannot_open_the_admin(client, acme):
    client.force_login(acme.memberships.get().user)
    response = client.get(url(APIKey, "changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
