"""accounts.services: organizations, role rules, last-owner protection, invites, API keys and
the audit trail."""

from __future__ import annotations

import hashlib

import pytest
from django.core import mail

from accounts import services
from accounts.keys import split_api_key
from accounts.models import APIKey, AuditEvent, Membership, Organization, Plan, Role, Subscription
from config.errors import NotFound, PermissionDenied, ValidationError
from tests.factories import UserFactory, add_member, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_org(slug="acme", plan="creator")


@pytest.fixture
def owner(org):
    return Membership.objects.get(organization=org, role=Role.OWNER).user


@pytest.fixture
def admin_m(org):
    return add_member(org, role=Role.ADMIN)


@pytest.fixture
def member_m(org):
    return add_member(org, role=Role.MEMBER)


# --- organizations ----------------------------------------------------------------------------


def test_organization_create_makes_owner_subscription_and_audit():
    user = UserFactory()
    org = make_org(slug="acme", plan="creator", owner=user)
    sub = Subscription.objects.get(organization=org)
    assert sub.plan.slug == "creator"
    assert sub.current_period_end > sub.current_period_start
    assert Membership.objects.get(organization=org).role == Role.OWNER
    actions = set(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    assert {"organization.created", "subscription.started"} <= actions
    assert AuditEvent.objects.get(action="organization.created").actor == user


def test_organization_slug_is_generated_from_the_name_and_kept_unique():
    plan = Plan.objects.get(slug="free")
    first = services.organization_create(name="Acme Labs", plan=plan)
    second = services.organization_create(name="Acme Labs", plan=plan)
    assert (first.slug, second.slug) == ("acme-labs", "acme-labs-2")


@pytest.mark.parametrize("slug", ["Acme", "acme_", "-acme", "acme-", "a b", ""])
def test_invalid_slug_is_refused(slug):
    with pytest.raises(ValidationError):
        services.organization_slug_validate(slug=slug)


def test_taken_slug_is_refused(org):
    with pytest.raises(ValidationError, match="already exists"):
        services.organization_create(name="x", slug="acme", plan=Plan.objects.get(slug="free"))
    assert Organization.objects.count() == 1


def test_user_signup_creates_a_free_org_owned_by_the_user():
    user, org = services.user_signup(
        email="New@Example.com", password="pw-123-long", organization_name="New Co"
    )
    assert user.email == "new@example.com"
    assert org.subscription.plan.slug == "free"
    assert Membership.objects.get(organization=org).user == user
    with pytest.raises(ValidationError):
        services.user_signup(email="NEW@example.com", password="x", organization_name="Dup")


# --- role rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.MEMBER])
def test_owner_may_add_any_role(org, owner, role):
    membership, _ = services.membership_add(
        organization=org, email="x@example.com", role=role, actor=owner
    )
    assert membership.role == role


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER])
def test_admin_may_add_admins_and_members(org, admin_m, role):
    services.membership_add(organization=org, email="x@example.com", role=role, actor=admin_m.user)


def test_admin_may_not_add_an_owner(org, admin_m):
    with pytest.raises(PermissionDenied):
        services.membership_add(
            organization=org, email="x@example.com", role=Role.OWNER, actor=admin_m.user
        )


def test_member_may_not_manage_members(org, member_m, admin_m):
    with pytest.raises(PermissionDenied):
        services.membership_add(
            organization=org, email="x@example.com", role=Role.MEMBER, actor=member_m.user
        )
    with pytest.raises(PermissionDenied):
        services.membership_change_role(membership=admin_m, role=Role.MEMBER, actor=member_m.user)
    with pytest.raises(PermissionDenied):
        services.membership_remove(membership=admin_m, actor=member_m.user)


def test_outsider_gets_not_found_never_permission_denied(org, member_m):
    outsider = make_org(slug="globex").memberships.get().user
    with pytest.raises(NotFound):
        services.membership_add(
            organization=org, email="x@example.com", role=Role.MEMBER, actor=outsider
        )
    with pytest.raises(NotFound):
        services.membership_remove(membership=member_m, actor=outsider)
    with pytest.raises(NotFound):
        services.api_key_create(organization=org, name="k", actor=outsider)


def test_admin_moves_people_between_admin_and_member_only(org, owner, admin_m, member_m):
    services.membership_change_role(membership=member_m, role=Role.ADMIN, actor=admin_m.user)
    member_m.refresh_from_db()
    assert member_m.role == Role.ADMIN
    with pytest.raises(PermissionDenied):
        services.membership_change_role(membership=member_m, role=Role.OWNER, actor=admin_m.user)
    owner_m = Membership.objects.get(organization=org, user=owner)
    with pytest.raises(PermissionDenied):
        services.membership_change_role(membership=owner_m, role=Role.MEMBER, actor=admin_m.user)


def test_owner_promotes_and_demotes(org, owner, member_m):
    services.membership_change_role(membership=member_m, role=Role.OWNER, actor=owner)
    owner_m = Membership.objects.get(organization=org, user=owner)
    services.membership_change_role(membership=owner_m, role=Role.MEMBER, actor=member_m.user)
    owner_m.refresh_from_db()
    assert owner_m.role == Role.MEMBER


def test_unknown_role_is_refused(org, owner, member_m):
    with pytest.raises(ValidationError):
        services.membership_change_role(membership=member_m, role="king", actor=owner)
    with pytest.raises(ValidationError):
        services.membership_add(organization=org, email="x@example.com", role="king", actor=owner)


def test_admin_removes_members_but_not_owners(org, owner, admin_m, member_m):
    services.membership_remove(membership=member_m, actor=admin_m.user)
    assert not Membership.objects.filter(pk=member_m.pk).exists()
    owner_m = Membership.objects.get(organization=org, user=owner)
    with pytest.raises(PermissionDenied):
        services.membership_remove(membership=owner_m, actor=admin_m.user)


def test_member_may_leave(member_m):
    services.membership_remove(membership=member_m, actor=member_m.user)
    assert not Membership.objects.filter(pk=member_m.pk).exists()


# --- last owner -------------------------------------------------------------------------------


def test_last_owner_cannot_be_demoted(org, owner):
    owner_m = Membership.objects.get(organization=org, user=owner)
    with pytest.raises(ValidationError, match="at least one owner"):
        services.membership_change_role(membership=owner_m, role=Role.ADMIN, actor=owner)
    owner_m.refresh_from_db()
    assert owner_m.role == Role.OWNER


def test_last_owner_cannot_leave(org, owner):
    owner_m = Membership.objects.get(organization=org, user=owner)
    with pytest.raises(ValidationError, match="at least one owner"):
        services.membership_remove(membership=owner_m, actor=owner)
    assert Membership.objects.filter(pk=owner_m.pk).exists()


def test_one_of_two_owners_may_leave(org, owner):
    second = add_member(org, role=Role.OWNER)
    services.membership_remove(membership=second, actor=owner)
    assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


def test_membership_ensure_keeps_the_last_owner(org, owner):
    with pytest.raises(ValidationError):
        services.membership_ensure(organization=org, user=owner, role=Role.MEMBER)


# --- invites ----------------------------------------------------------------------------------


def test_adding_an_unknown_email_creates_the_user_and_mails_an_invite(
    org, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        membership, created = services.membership_add(
            organization=org, email="Newbie@Example.com", role=Role.MEMBER, actor=owner
        )
    assert created is True
    assert len(callbacks) == 1
    user = membership.user
    assert user.email == "newbie@example.com"
    assert not user.has_usable_password()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["newbie@example.com"]
    assert org.name in message.subject
    assert "/reset/" in message.body or "reset" in message.body.lower()


def test_invite_is_sent_only_after_commit(org, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        services.membership_add(
            organization=org, email="later@example.com", role=Role.MEMBER, actor=owner
        )
    assert mail.outbox == []


def test_adding_an_existing_user_does_not_create_one(org, owner):
    existing = UserFactory(email="known@example.com")
    membership, created = services.membership_add(
        organization=org, email="KNOWN@example.com", role=Role.ADMIN, actor=owner
    )
    assert created is False
    assert membership.user == existing


def test_adding_a_member_twice_is_refused(org, owner, member_m):
    with pytest.raises(ValidationError, match="already a member"):
        services.membership_add(
            organization=org, email=member_m.user.email, role=Role.MEMBER, actor=owner
        )


def test_invalid_email_is_refused(org, owner):
    with pytest.raises(ValidationError):
        services.membership_add(organization=org, email="nope", role=Role.MEMBER, actor=owner)


# --- audit ------------------------------------------------------------------------------------


def test_member_changes_are_audited_with_the_actor(org, owner):
    membership, _ = services.membership_add(
        organization=org, email="a@example.com", role=Role.MEMBER, actor=owner
    )
    services.membership_change_role(membership=membership, role=Role.ADMIN, actor=owner)
    services.membership_remove(membership=membership, actor=owner)
    events = AuditEvent.objects.filter(organization=org, action__startswith="membership.").order_by(
        "id"
    )
    assert [e.action for e in events] == [
        "membership.added",
        "membership.role_changed",
        "membership.removed",
    ]
    assert all(e.actor == owner for e in events)
    assert events[1].data == {"email": "a@example.com", "from": "member", "to": "admin"}


# --- API keys ---------------------------------------------------------------------------------


def test_api_key_create_stores_only_the_digest_and_audits(org, owner):
    key, raw = services.api_key_create(organization=org, name=" ci ", actor=owner)
    assert key.name == "ci"
    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    assert split_api_key(raw)[0] == key.prefix
    event = AuditEvent.objects.get(action="api_key.created")
    assert event.actor == owner
    assert raw not in str(event.data)


def test_api_key_needs_a_name(org, owner):
    with pytest.raises(ValidationError):
        services.api_key_create(organization=org, name="  ", actor=owner)


def test_members_may_not_create_or_revoke_keys(org, member_m):
    with pytest.raises(PermissionDenied):
        services.api_key_create(organization=org, name="k", actor=member_m.user)
    key, _ = services.api_key_create(organization=org, name="k", actor=None)
    with pytest.raises(PermissionDenied):
        services.api_key_revoke(api_key=key, actor=member_m.user)
    key.refresh_from_db()
    assert key.is_active


def test_api_key_revoke_is_idempotent_and_audited_once(org, admin_m):
    key, _ = services.api_key_create(organization=org, name="k", actor=None)
    services.api_key_revoke(api_key=key, actor=admin_m.user)
    first = key.revoked_at
    services.api_key_revoke(api_key=key, actor=admin_m.user)
    assert key.revoked_at == first
    event = AuditEvent.objects.get(action="api_key.revoked")
    assert event.actor == admin_m.user


def test_staff_revoke_needs_an_active_staff_user(org):
    key, _ = services.api_key_create(organization=org, name="k", actor=None)
    with pytest.raises(PermissionDenied):
        services.api_key_revoke(api_key=key, actor=UserFactory(), as_staff=True)
    staff = UserFactory(is_staff=True)
    services.api_key_revoke(api_key=key, actor=staff, as_staff=True)
    assert not APIKey.objects.get(pk=key.pk).is_active
    assert AuditEvent.objects.get(action="api_key.revoked").actor == staff


def test_api_key_lookup_accepts_only_the_exact_active_key(org):
    from accounts.selectors import api_key_from_raw

    key, raw = services.api_key_create(organization=org, name="k", actor=None)
    assert api_key_from_raw(raw_key=raw) == key
    assert api_key_from_raw(raw_key=raw + "x") is None
    assert api_key_from_raw(raw_key="garbage") is None
    services.api_key_revoke(api_key=key, actor=None)
    assert api_key_from_raw(raw_key=raw) is None


# --- system-level helpers (commands) ----------------------------------------------------------


def test_user_ensure_creates_then_updates_without_duplicates():
    user, created = services.user_ensure(email="Ops@Example.com")
    assert created and user.email == "ops@example.com"
    assert not user.has_usable_password()
    same, created = services.user_ensure(
        email="OPS@example.com", password="pw-x-123", is_staff=True
    )
    assert not created and same.pk == user.pk
    same.refresh_from_db()
    assert same.check_password("pw-x-123") and same.is_staff


def test_user_ensure_refuses_invalid_email():
    with pytest.raises(ValidationError):
        services.user_ensure(email="not an email")


def test_plans_ensure_defaults_only_fills_gaps():
    Plan.objects.filter(slug="starter").update(monthly_credits=123)
    Plan.objects.filter(slug="studio").delete()
    created = services.plans_ensure_defaults()
    assert [p.slug for p in created] == ["studio"]
    assert Plan.objects.get(slug="starter").monthly_credits == 123
