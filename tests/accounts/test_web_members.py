"""Web UI: the members page — listing, adding by email, role changes, removal, leaving."""

import pytest
from django.core import mail
from django.urls import reverse

from accounts.middleware import SESSION_KEY
from accounts.models import Membership, Role, User
from tests.factories import UserFactory, add_member, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_org(name="Acme")


@pytest.fixture
def owner(org):
    return org.memberships.get(role=Role.OWNER)


def _login(client, membership):
    client.force_login(membership.user)
    client.get(reverse("dashboard"))  # sets the active organization
    return client


def _roles(org):
    return dict(Membership.objects.filter(organization=org).values_list("user__email", "role"))


# --- Listing ----------------------------------------------------------------------------------


def test_members_page_lists_everyone_with_role_and_join_date(client, org, owner):
    member = add_member(org, role=Role.MEMBER)
    _login(client, owner)

    body = client.get(reverse("members")).content.decode()

    assert owner.user.email in body
    assert member.user.email in body
    assert member.user.name in body
    assert 'data-label="Joined"' in body
    assert 'name="email"' in body  # the add form, for owners


def test_members_page_is_read_only_for_plain_members(client, org):
    member = add_member(org, role=Role.MEMBER)
    other = add_member(org, role=Role.MEMBER)
    _login(client, member)

    body = client.get(reverse("members")).content.decode()

    assert other.user.email in body
    assert 'name="email"' not in body
    assert reverse("member_change_role", args=[other.pk]) not in body
    assert reverse("member_remove", args=[other.pk]) not in body
    assert reverse("member_remove", args=[member.pk]) in body  # but they may leave


# --- Adding -----------------------------------------------------------------------------------


def test_owner_adds_an_unknown_email_which_creates_an_invited_user(
    client, org, owner, django_capture_on_commit_callbacks
):
    _login(client, owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("members"), {"email": "New.Person@Example.com", "role": Role.ADMIN}, follow=True
        )

    assert response.redirect_chain[-1][0] == reverse("members")
    user = User.objects.get(email="new.person@example.com")
    assert not user.has_usable_password()
    assert Membership.objects.get(organization=org, user=user).role == Role.ADMIN
    body = response.content.decode()
    assert "emailed new.person@example.com an invitation" in body
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]


def test_admin_adds_an_existing_user_as_member(client, org):
    admin = add_member(org, role=Role.ADMIN)
    existing = UserFactory(email="known@example.com")
    _login(client, admin)

    response = client.post(reverse("members"), {"email": "known@example.com", "role": "member"})

    assert response.status_code == 302
    assert Membership.objects.get(organization=org, user=existing).role == Role.MEMBER


def test_adding_someone_who_is_already_a_member_is_a_field_error(client, org, owner):
    member = add_member(org)
    _login(client, owner)
    before = Membership.objects.count()

    response = client.post(reverse("members"), {"email": member.user.email, "role": "member"})

    assert response.status_code == 200
    assert "already a member" in response.context["add_form"].errors["email"][0]
    assert Membership.objects.count() == before


def test_adding_with_an_invalid_email_writes_nothing(client, org, owner):
    _login(client, owner)
    users, memberships = User.objects.count(), Membership.objects.count()

    response = client.post(reverse("members"), {"email": "not-an-email", "role": "member"})

    assert response.status_code == 200
    assert "email" in response.context["add_form"].errors
    assert (User.objects.count(), Membership.objects.count()) == (users, memberships)
    assert mail.outbox == []


def test_admin_cannot_add_an_owner(client, org):
    admin = add_member(org, role=Role.ADMIN)
    _login(client, admin)
    before = Membership.objects.count()

    response = client.post(reverse("members"), {"email": "boss@example.com", "role": "owner"})

    assert response.status_code == 200
    assert "role" in response.context["add_form"].errors
    assert Membership.objects.count() == before
    assert not User.objects.filter(email="boss@example.com").exists()


def test_member_cannot_add_anyone(client, org, django_capture_on_commit_callbacks):
    member = add_member(org, role=Role.MEMBER)
    _login(client, member)
    before = (User.objects.count(), Membership.objects.count())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("members"), {"email": "x@example.com", "role": "member"})

    assert response.status_code == 403
    assert (User.objects.count(), Membership.objects.count()) == before
    assert mail.outbox == []


# --- Changing roles ---------------------------------------------------------------------------


def test_owner_changes_a_members_role(client, org, owner):
    member = add_member(org, role=Role.MEMBER)
    _login(client, owner)

    response = client.post(reverse("member_change_role", args=[member.pk]), {"role": "admin"})

    assert response["Location"] == reverse("members")
    member.refresh_from_db()
    assert member.role == Role.ADMIN


def test_owner_can_make_another_owner(client, org, owner):
    admin = add_member(org, role=Role.ADMIN)
    _login(client, owner)
    client.post(reverse("member_change_role", args=[admin.pk]), {"role": "owner"})
    admin.refresh_from_db()
    assert admin.role == Role.OWNER


def test_admin_changes_member_to_admin_but_cannot_touch_owners(client, org, owner):
    admin = add_member(org, role=Role.ADMIN)
    member = add_member(org, role=Role.MEMBER)
    _login(client, admin)

    client.post(reverse("member_change_role", args=[member.pk]), {"role": "admin"})
    member.refresh_from_db()
    assert member.role == Role.ADMIN

    before = _roles(org)
    assert (
        client.post(reverse("member_change_role", args=[owner.pk]), {"role": "member"}).status_code
        == 403
    )
    assert (
        client.post(reverse("member_change_role", args=[member.pk]), {"role": "owner"}).status_code
        == 403
    )
    assert client.post(reverse("member_remove", args=[owner.pk])).status_code == 403
    assert _roles(org) == before


def test_member_cannot_change_roles_or_remove_others(client, org, owner):
    member = add_member(org, role=Role.MEMBER)
    other = add_member(org, role=Role.MEMBER)
    _login(client, member)
    before = _roles(org)

    response = client.post(reverse("member_change_role", args=[other.pk]), {"role": "admin"})
    assert response.status_code == 403
    response = client.post(reverse("member_change_role", args=[member.pk]), {"role": "owner"})
    assert response.status_code == 403
    assert client.post(reverse("member_remove", args=[other.pk])).status_code == 403
    assert client.post(reverse("member_remove", args=[owner.pk])).status_code == 403

    assert _roles(org) == before


def test_last_owner_cannot_be_demoted(client, org, owner):
    _login(client, owner)

    response = client.post(
        reverse("member_change_role", args=[owner.pk]), {"role": "member"}, follow=True
    )

    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    assert "at least one owner" in response.content.decode()


def test_unknown_role_changes_nothing(client, org, owner):
    member = add_member(org, role=Role.MEMBER)
    _login(client, owner)
    client.post(reverse("member_change_role", args=[member.pk]), {"role": "emperor"})
    member.refresh_from_db()
    assert member.role == Role.MEMBER


def test_role_change_over_htmx_returns_the_refreshed_table(client, org, owner):
    member = add_member(org, role=Role.MEMBER)
    _login(client, owner)

    response = client.post(
        reverse("member_change_role", args=[member.pk]), {"role": "admin"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="members-table">')
    assert "<html" not in body
    assert 'hx-swap-oob="true"' in body
    assert "is now an admin" in body


def test_role_change_and_remove_need_post(client, org, owner):
    member = add_member(org)
    _login(client, owner)
    assert client.get(reverse("member_change_role", args=[member.pk])).status_code == 405
    assert client.get(reverse("member_remove", args=[member.pk])).status_code == 405


# --- Removing and leaving ---------------------------------------------------------------------


def test_owner_removes_a_member(client, org, owner):
    member = add_member(org, role=Role.ADMIN)
    _login(client, owner)

    response = client.post(reverse("member_remove", args=[member.pk]), follow=True)

    assert not Membership.objects.filter(pk=member.pk).exists()
    assert User.objects.filter(pk=member.user_id).exists()
    assert f"Removed {member.user.email}" in response.content.decode()


def test_admin_removes_a_member(client, org):
    admin = add_member(org, role=Role.ADMIN)
    member = add_member(org, role=Role.MEMBER)
    _login(client, admin)
    client.post(reverse("member_remove", args=[member.pk]))
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_removal_over_htmx_returns_the_table_without_the_row(client, org, owner):
    member = add_member(org)
    _login(client, owner)

    response = client.post(reverse("member_remove", args=[member.pk]), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert member.user.email not in response.content.decode().split("hx-swap-oob")[0]
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_member_leaves_and_lands_on_the_create_organization_page(client, org):
    member = add_member(org, role=Role.MEMBER)
    _login(client, member)

    response = client.post(reverse("member_remove", args=[member.pk]))

    assert response["Location"] == reverse("dashboard")
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert SESSION_KEY not in client.session
    assert client.get(reverse("dashboard"))["Location"] == reverse("organization_create")


def test_last_owner_cannot_leave(client, org, owner):
    _login(client, owner)

    response = client.post(reverse("member_remove", args=[owner.pk]), follow=True)

    assert Membership.objects.filter(pk=owner.pk).exists()
    assert "at least one owner" in response.content.decode()


def test_an_owner_may_leave_when_another_owner_remains(client, org, owner):
    add_member(org, role=Role.OWNER)
    _login(client, owner)
    client.post(reverse("member_remove", args=[owner.pk]))
    assert not Membership.objects.filter(pk=owner.pk).exists()


# --- Tenancy ----------------------------------------------------------------------------------


def test_another_orgs_membership_is_404_and_unchanged(client, org, owner):
    other_org = make_org(name="Other")
    victim = add_member(other_org, role=Role.MEMBER)
    other_owner = other_org.memberships.get(role=Role.OWNER)
    _login(client, owner)
    before = _roles(other_org)

    assert (
        client.post(reverse("member_change_role", args=[victim.pk]), {"role": "admin"}).status_code
        == 404
    )
    assert (
        client.post(
            reverse("member_change_role", args=[other_owner.pk]), {"role": "member"}
        ).status_code
        == 404
    )
    assert client.post(reverse("member_remove", args=[victim.pk])).status_code == 404
    assert client.post(reverse("member_remove", args=[other_owner.pk])).status_code == 404
    assert client.post(reverse("member_remove", args=[999999])).status_code == 404

    assert _roles(other_org) == before


def test_actions_apply_to_the_active_organization_only(client, org, owner):
    """A user in two orgs acting in A cannot touch B's members through A's pages."""
    second = make_org(name="Second")
    add_member(second, user=owner.user, role=Role.OWNER)
    member_of_second = add_member(second, role=Role.MEMBER)
    _login(client, owner)
    client.post(reverse("organization_switch"), {"organization": org.pk})

    response = client.post(reverse("member_remove", args=[member_of_second.pk]))

    assert response.status_code == 404
    assert Membership.objects.filter(pk=member_of_second.pk).exists()
