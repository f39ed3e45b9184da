"""Web UI: sign up, log in/out, password reset, dashboard, organization switcher, error pages."""

import re

import pytest
from django.core import mail
from django.template.loader import get_template
from django.test import Client
from django.urls import reverse

from accounts.middleware import SESSION_KEY
from accounts.models import AuditEvent, Membership, Organization, Role, Subscription, User
from tests.factories import UserFactory, add_member, make_org

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def _counts():
    return (
        User.objects.count(),
        Organization.objects.count(),
        Membership.objects.count(),
        Subscription.objects.count(),
        AuditEvent.objects.count(),
    )


def _signup_data(**overrides):
    data = {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "organization_name": "Analytical Engines",
        "password1": "a-long-unusual-passphrase-42",
        "password2": "a-long-unusual-passphrase-42",
    }
    data.update(overrides)
    return data


# --- Sign up ----------------------------------------------------------------------------------


def test_signup_page_renders_the_form(client):
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    for field in ("email", "organization_name", "password1", "password2"):
        assert f'name="{field}"' in response.content.decode()


def test_signup_creates_user_and_org_on_free_plan_as_owner_and_logs_in(client):
    response = client.post(reverse("signup"), _signup_data(email="Ada@Example.com"))

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    user = User.objects.get(email="ada@example.com")
    assert user.check_password("a-long-unusual-passphrase-42")
    assert user.name == "Ada Lovelace"
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.name == "Analytical Engines"
    assert membership.organization.subscription.plan.slug == "free"
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session[SESSION_KEY] == membership.organization_id

    dashboard = client.get(reverse("dashboard"))
    assert dashboard.status_code == 200
    assert "Analytical Engines" in dashboard.content.decode()


def test_signup_with_an_existing_email_shows_an_error_and_writes_nothing(client):
    UserFactory(email="ada@example.com")
    before = _counts()

    response = client.post(reverse("signup"), _signup_data(email="ADA@example.com"))

    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert "already exists" in response.content.decode()
    assert _counts() == before
    assert "_auth_user_id" not in client.session


def test_signup_with_mismatched_passwords_shows_an_error_and_writes_nothing(client):
    before = _counts()

    response = client.post(reverse("signup"), _signup_data(password2="something-else-entirely"))

    assert response.status_code == 200
    assert response.context["form"].errors["password2"] == ["The two passwords do not match."]
    assert "do not match" in response.content.decode()
    assert _counts() == before


def test_signup_rejects_a_weak_password_with_djangos_validators(client):
    before = _counts()

    response = client.post(reverse("signup"), _signup_data(password1="12345", password2="12345"))

    assert response.status_code == 200
    assert "password1" in response.context["form"].errors
    assert _counts() == before


def test_signup_requires_an_organization_name(client):
    before = _counts()

    response = client.post(reverse("signup"), _signup_data(organization_name="   "))

    assert response.status_code == 200
    assert "organization_name" in response.context["form"].errors
    assert _counts() == before


def test_signup_redirects_users_who_are_already_logged_in(client):
    org = make_org()
    client.force_login(org.memberships.get().user)
    assert client.get(reverse("signup"))["Location"] == reverse("dashboard")


# --- Log in / out / password reset ------------------------------------------------------------


def test_login_with_email_and_password_lands_on_the_dashboard(client):
    org = make_org(name="Acme")
    user = org.memberships.get().user

    response = client.post(reverse("login"), {"username": user.email.upper(), "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_with_a_wrong_password_shows_an_error(client):
    user = UserFactory()

    response = client.post(reverse("login"), {"username": user.email, "password": "nope"})

    assert response.status_code == 200
    assert "Enter a correct email and password." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_login_page_labels_the_field_as_email(client):
    body = client.get(reverse("login")).content.decode()
    assert 'type="email"' in body
    assert ">Email</label>" in body


def test_logout_is_a_post_that_ends_the_session(client):
    user = UserFactory()
    client.force_login(user)

    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session


def test_password_reset_emails_a_link_that_sets_a_new_password(client):
    user = UserFactory(email="reset@example.com")

    response = client.post(reverse("password_reset"), {"email": "reset@example.com"})
    assert response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/password-reset/\S+/)", mail.outbox[0].body).group(1)

    response = client.get(link, follow=True)  # Django swaps the token for a session marker
    assert response.context["validlink"] is True
    set_url = response.redirect_chain[-1][0]
    new = "another-long-passphrase-77"
    response = client.post(set_url, {"new_password1": new, "new_password2": new})
    assert response["Location"] == reverse("password_reset_complete")
    user.refresh_from_db()
    assert user.check_password(new)
    assert client.get(reverse("password_reset_complete")).status_code == 200


def test_password_reset_also_serves_invited_users_who_never_set_a_password(client):
    invited = User.objects.create_user(email="invited@example.com", password=None)
    assert not invited.has_usable_password()

    client.post(reverse("password_reset"), {"email": "Invited@Example.com"})

    assert [m.to for m in mail.outbox] == [["invited@example.com"]]


def test_password_reset_for_an_unknown_email_sends_nothing_but_looks_the_same(client):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


# --- Dashboard --------------------------------------------------------------------------------


def test_dashboard_requires_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_dashboard_shows_org_plan_period_role_and_credits_card(client):
    org = make_org(name="Acme Labs", plan="creator")
    client.force_login(org.memberships.get().user)

    response = client.get(reverse("dashboard"))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Acme Labs" in body
    assert "Creator" in body
    assert "Current period" in body
    assert "Owner" in body
    assert 'id="card-credits"' in body
    for name in ("members", "api_keys"):
        assert f'href="{reverse(name)}"' in body


def test_nav_shows_admin_link_only_to_staff(client):
    org = make_org()
    user = org.memberships.get().user
    client.force_login(user)
    assert 'href="/admin/"' not in client.get(reverse("dashboard")).content.decode()
    user.is_staff = True
    user.save()
    assert 'href="/admin/"' in client.get(reverse("dashboard")).content.decode()


def test_user_without_an_organization_is_offered_to_create_one(client):
    user = UserFactory()
    client.force_login(user)

    response = client.get(reverse("dashboard"))
    assert response["Location"] == reverse("organization_create")
    assert "not in any organization" in client.get(reverse("organization_create")).content.decode()

    response = client.post(reverse("organization_create"), {"name": "Fresh Start"})

    assert response["Location"] == reverse("dashboard")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.subscription.plan.slug == "free"
    assert client.session[SESSION_KEY] == membership.organization_id


def test_organization_create_with_a_blank_name_writes_nothing(client):
    client.force_login(UserFactory())
    before = _counts()
    response = client.post(reverse("organization_create"), {"name": "  "})
    assert response.status_code == 200
    assert "name" in response.context["form"].errors
    assert _counts() == before


# --- Organization switcher --------------------------------------------------------------------


def test_switcher_is_hidden_for_users_in_one_organization(client):
    org = make_org()
    client.force_login(org.memberships.get().user)
    assert "org-switcher-select" not in client.get(reverse("dashboard")).content.decode()


def test_switcher_lists_only_the_users_organizations_and_switches(client):
    first = make_org(name="First Org")
    user = first.memberships.get().user
    second = make_org(name="Second Org")
    add_member(second, user=user, role=Role.MEMBER)
    make_org(name="Stranger Org")
    client.force_login(user)

    body = client.get(reverse("dashboard")).content.decode()
    assert "org-switcher-select" in body
    assert "Second Org" in body
    assert "Stranger Org" not in body

    response = client.post(
        reverse("organization_switch"), {"organization": second.pk, "next": "/members/"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/members/"
    assert client.session[SESSION_KEY] == second.pk
    assert client.get(reverse("dashboard")).context["organization"] == second


def test_switching_to_an_organization_you_are_not_in_is_404(client):
    mine = make_org(name="Mine")
    user = mine.memberships.get().user
    other = make_org(name="Not Mine")
    client.force_login(user)
    client.get(reverse("dashboard"))

    response = client.post(reverse("organization_switch"), {"organization": other.pk})

    assert response.status_code == 404
    assert client.session[SESSION_KEY] == mine.pk
    assert client.post(reverse("organization_switch"), {"organization": "x"}).status_code == 404


def test_switch_ignores_an_offsite_next(client):
    org = make_org()
    client.force_login(org.memberships.get().user)
    response = client.post(
        reverse("organization_switch"), {"organization": org.pk, "next": "https://evil.test/"}
    )
    assert response["Location"] == reverse("dashboard")


# --- CSRF and error pages ---------------------------------------------------------------------


def test_csrf_is_enforced_on_form_posts():
    csrf_client = Client(enforce_csrf_checks=True)
    before = _counts()

    response = csrf_client.post(reverse("signup"), _signup_data())

    assert response.status_code == 403
    assert _counts() == before

    # With the token from the form, the same POST goes through.
    csrf_client.get(reverse("signup"))
    token = csrf_client.cookies["csrftoken"].value
    response = csrf_client.post(reverse("signup"), {**_signup_data(), "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_base_layout_sends_the_csrf_token_header_for_htmx(client):
    body = client.get(reverse("login")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in body
    assert "vendor/htmx.min.js" in body
    assert "vendor/pico.min.css" in body


def test_unknown_page_uses_the_404_template(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_500_template_renders_without_a_request_context():
    html = get_template("500.html").render({})
    assert "Something went wrong" in html
