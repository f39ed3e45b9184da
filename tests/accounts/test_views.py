"""Web UI: sign up, log in/out, password reset, dashboard, organization switcher, error pages."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core import mail
from django.template.loader import get_template
from django.test import Client, override_settings
from django.urls import reverse

from accounts.middleware import SESSION_KEY
from accounts.models import AuditEvent, Membership, Organization, Role, Subscription, User
from tests.factories import UserFactory, add_member, make_ai_model, make_org

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
    }
    data.update(overrides)
    return data


PASSPHRASE = "a-long-unusual-passphrase-42"


def _emailed_path(message) -> str:
    return re.search(r"https?://[^/\s]+(/\S+/)", message.body).group(1)


def _signup_link(client, **overrides) -> str:
    """Step 1 of signing up; returns the path of the emailed link."""
    response = client.post(reverse("signup"), _signup_data(**overrides))
    assert response.status_code == 302
    assert response["Location"] == reverse("signup_sent")
    assert len(mail.outbox) == 1
    return _emailed_path(mail.outbox[-1])


# --- Sign up ----------------------------------------------------------------------------------


def test_signup_page_renders_the_form(client):
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    for field in ("email", "name", "organization_name"):
        assert f'name="{field}"' in response.content.decode()


def test_signup_emails_a_link_then_creates_user_and_org_on_free_plan_and_logs_in(client):
    before = _counts()
    link = _signup_link(client, email="Ada@Example.com")
    assert mail.outbox[0].to == ["ada@example.com"]
    assert _counts() == before  # nothing is written before the address is confirmed
    assert client.get(reverse("signup_sent")).status_code == 200

    page = client.get(link)
    assert page.status_code == 200
    assert "ada@example.com" in page.content.decode()
    response = client.post(link, {"password1": PASSPHRASE, "password2": PASSPHRASE})

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    user = User.objects.get(email="ada@example.com")
    assert user.check_password(PASSPHRASE)
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


def test_signup_with_an_existing_email_answers_the_same_and_emails_the_owner(client):
    """No account enumeration: the answer is the same as for a new address; the existing
    account's owner is told by email and nothing is written."""
    UserFactory(email="ada@example.com")
    fresh = Client().post(reverse("signup"), _signup_data(email="new@example.com"))
    mail.outbox.clear()
    before = _counts()

    response = client.post(reverse("signup"), _signup_data(email="ADA@example.com"))

    assert response.status_code == fresh.status_code == 302
    assert response["Location"] == fresh["Location"] == reverse("signup_sent")
    assert _counts() == before
    assert "_auth_user_id" not in client.session
    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert "already have one" in message.body
    assert reverse("password_reset") in message.body
    assert "/signup/confirm/" not in message.body


def test_signup_link_works_once_and_not_when_forged(client):
    link = _signup_link(client)
    client.post(link, {"password1": PASSPHRASE, "password2": PASSPHRASE})
    client.post(reverse("logout"))

    again = client.get(link)
    assert again.status_code == 400
    assert "already used" in again.content.decode()
    forged = client.get(link[:-4] + "AAA/")
    assert forged.status_code == 400
    assert "invalid or too old" in forged.content.decode()
    assert User.objects.filter(email="ada@example.com").count() == 1


def test_signup_link_expires(client, settings):
    link = _signup_link(client)
    settings.PASSWORD_RESET_TIMEOUT = -1

    response = client.post(link, {"password1": PASSPHRASE, "password2": PASSPHRASE})

    assert response.status_code == 400
    assert not User.objects.filter(email="ada@example.com").exists()


def test_signup_with_mismatched_passwords_shows_an_error_and_writes_nothing(client):
    link = _signup_link(client)
    before = _counts()

    response = client.post(link, {"password1": PASSPHRASE, "password2": "something-else"})

    assert response.status_code == 200
    assert response.context["form"].errors["password2"] == ["The two passwords do not match."]
    assert "do not match" in response.content.decode()
    assert _counts() == before


def test_signup_rejects_a_weak_password_with_djangos_validators(client):
    link = _signup_link(client)
    before = _counts()

    response = client.post(link, {"password1": "12345", "password2": "12345"})

    assert response.status_code == 200
    assert "password1" in response.context["form"].errors
    assert _counts() == before


def test_signup_emails_carry_nothing_the_caller_typed_but_the_address(client):
    spam = "Cheap pills at https://spam.example"
    client.post(reverse("signup"), _signup_data(name=spam, organization_name=spam))
    UserFactory(email="taken@example.com")
    client.post(reverse("signup"), _signup_data(email="taken@example.com", organization_name=spam))

    assert len(mail.outbox) == 2
    for message in mail.outbox:
        assert "spam" not in message.subject + message.body


def test_signup_sends_at_most_3_emails_an_hour_to_one_address(client):
    for _ in range(5):
        response = client.post(reverse("signup"), _signup_data())
        assert response["Location"] == reverse("signup_sent")  # the same answer every time
    assert len(mail.outbox) == 3


def test_signup_requests_from_one_client_address_are_limited(client, settings):
    settings.SIGNUP_REQUESTS_PER_ADDRESS_PER_HOUR = 2
    for n in range(2):
        client.post(reverse("signup"), _signup_data(email=f"u{n}@example.com"))

    response = client.post(reverse("signup"), _signup_data(email="u3@example.com"))

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 3600
    assert "Too many sign-ups from your network; try again in" in response.content.decode()
    assert len(mail.outbox) == 2
    other = Client().post(
        reverse("signup"), _signup_data(email="u3@example.com"), REMOTE_ADDR="10.0.0.9"
    )
    assert other.status_code == 302
    assert len(mail.outbox) == 3


def test_signup_requires_an_organization_name(client):
    before = _counts()

    response = client.post(reverse("signup"), _signup_data(organization_name="   "))

    assert response.status_code == 200
    assert "organization_name" in response.context["form"].errors
    assert _counts() == before
    assert mail.outbox == []


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


def _jobs(org, n, *, settings):
    """n jobs of org's, the first n-1 run to success (charged), the last left queued."""
    from generations import services as generation_services

    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    make_ai_model("sdxl", credits="5", name="Stable Diffusion XL")
    jobs = []
    for i in range(n):
        job = generation_services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": f"cat {i}"}
        )[0]
        if i < n - 1:
            generation_services.generation_run(job_id=job.pk)
        jobs.append(job)
    return jobs


def test_dashboard_has_generate_button_recent_jobs_and_period_usage_chart(client, settings):
    org = make_org(name="Acme Labs", plan="creator")
    jobs = _jobs(org, 6, settings=settings)
    client.force_login(org.memberships.get().user)

    body = client.get(reverse("dashboard")).content.decode()

    assert re.search(r'<a href="/generate/" role="button"[^>]*>Generate</a>', body)
    recent = body.split('data-testid="dashboard-jobs"')[1].split("</section>")[0]
    # The five newest, newest first, each linking to its page with its status.
    shown = re.findall(r'href="/generate/jobs/([0-9a-f-]{36})/"', recent)
    assert shown == [str(j.pk) for j in reversed(jobs)][:5]
    assert "Stable Diffusion XL" in recent
    assert "Queued" in recent and "Succeeded" in recent
    assert 'href="/generate/jobs/"' in recent
    usage = body.split('data-testid="dashboard-usage"')[1].split("</section>")[0]
    assert 'data-testid="usage-chart"' in usage
    assert "25 credits spent over 5 generations" in usage


def test_dashboard_without_jobs_invites_a_first_generation(client):
    org = make_org(plan="free")
    client.force_login(org.memberships.get().user)
    body = client.get(reverse("dashboard")).content.decode()
    assert "No jobs yet." in body and "Run your first generation" in body
    assert "No usage in these" in body


@pytest.mark.parametrize(
    ("plan", "upgrade"),
    [("free", "Starter"), ("starter", "Creator"), ("creator", "Studio"), ("studio", None)],
)
def test_dashboard_shows_the_upgrade_path_to_the_next_plan(client, plan, upgrade):
    org = make_org(plan=plan)
    client.force_login(org.memberships.get().user)
    body = client.get(reverse("dashboard")).content.decode()
    if upgrade is None:
        assert 'data-testid="dashboard-upgrade"' not in body
    else:
        link = body.split('data-testid="dashboard-upgrade"')[1].split("</p>")[0]
        slug = upgrade.lower()
        assert f'href="{reverse("credits:billing")}#plan-{slug}"' in link
        assert f"Upgrade to {upgrade}" in link


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


@override_settings(DEBUG=False, ROOT_URLCONF="tests.accounts.error_urls")
def test_a_failing_page_answers_the_custom_500_page_outside_debug(db):
    client = Client(raise_request_exception=False)
    response = client.get("/boom/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body
    assert "favicon.svg" in body
    assert "Traceback" not in body and "an unexpected failure" not in body


@override_settings(DEBUG=False)
def test_the_custom_404_page_outside_debug(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Page not found" in body and "Go to the dashboard" in body
    assert "Using the URLconf" not in body  # not Django's technical 404


def test_every_page_links_the_favicon_and_favicon_ico_redirects_to_it(client):
    body = client.get(reverse("login")).content.decode()
    assert re.search(r'<link rel="icon" href="[^"]*favicon\.svg"', body)
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith("favicon.svg")
    assert finders.find("favicon.svg") is not None
