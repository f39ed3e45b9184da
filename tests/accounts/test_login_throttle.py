"""Brute-force protection of /login/ and /admin/login/ (accounts.login_throttle)."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts import login_throttle
from tests.factories import UserFactory, make_org

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"


def _login(client, email, password, *, address="10.0.0.1", url=None):
    return client.post(
        url or reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=address
    )


def _owner(name="Acme"):
    return make_org(name=name).memberships.get().user


def test_the_defaults_are_5_per_account_and_50_per_address_for_15_minutes(settings):
    assert settings.LOGIN_MAX_FAILURES_PER_ACCOUNT == 5
    assert settings.LOGIN_MAX_FAILURES_PER_ADDRESS == 50
    assert settings.LOGIN_FAILURE_WINDOW_S == 900
    assert settings.LOGIN_LOCKOUT_S == 900


def test_after_5_wrong_passwords_the_right_one_is_refused_with_429_and_retry_after(client):
    user = _owner()
    for _ in range(4):
        response = _login(client, user.email, "wrong")
        assert response.status_code == 200
        assert "Enter a correct email and password." in response.content.decode()

    fifth = _login(client, user.email, "wrong")
    assert fifth.status_code == 429
    assert fifth["Retry-After"] == "900"

    response = _login(client, user.email, PASSWORD)

    assert response.status_code == 429
    assert int(response["Retry-After"]) in range(895, 901)
    body = response.content.decode()
    assert "Too many attempts; try again in 15 minutes." in body
    assert 'name="password"' in body  # the form, again
    assert "_auth_user_id" not in client.session


def test_a_locked_account_is_refused_from_any_address_but_others_are_not_blocked(client):
    victim, other = _owner("Victim"), _owner("Other")
    for _ in range(5):
        _login(client, victim.email, "wrong", address="10.0.0.1")

    assert _login(Client(), victim.email, PASSWORD, address="10.9.9.9").status_code == 429
    other_client = Client()
    response = _login(other_client, other.email, PASSWORD, address="10.0.0.2")
    assert response.status_code == 302
    assert other_client.session["_auth_user_id"] == str(other.pk)


def test_an_address_is_locked_after_its_limit_across_accounts(client, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    user = _owner()
    for n in range(3):
        _login(client, f"guess{n}@example.com", "wrong", address="10.0.0.7")

    refused = _login(Client(), user.email, PASSWORD, address="10.0.0.7")
    assert refused.status_code == 429
    assert "Too many attempts" in refused.content.decode()
    assert _login(Client(), user.email, PASSWORD, address="10.0.0.8").status_code == 302


def test_a_successful_login_resets_the_account_count_but_not_the_address(client, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 9
    user = _owner()
    for _ in range(4):
        _login(client, user.email, "wrong")
    assert _login(client, user.email, PASSWORD).status_code == 302
    client.post(reverse("logout"))

    for _ in range(4):  # 4 more: the account's count started again (4 < 5)...
        assert _login(client, user.email, "wrong").status_code == 200
    # ... but the address's did not: 9 failures from it lock it.
    assert _login(client, user.email, "wrong").status_code == 429
    assert _login(Client(), user.email, PASSWORD, address="10.0.0.1").status_code == 429


def test_unknown_emails_are_counted_like_real_ones(client):
    """A lock says nothing about whether the account exists."""
    for _ in range(5):
        last = _login(client, "nobody@example.com", "wrong")
    assert last.status_code == 429


def test_the_admin_login_is_throttled_too(client):
    staff = UserFactory(email="ops@example.com", is_staff=True)
    staff.set_password(PASSWORD)
    staff.save()
    url = reverse("admin:login")
    for _ in range(5):
        response = _login(client, staff.email, "wrong", url=url)
    assert response.status_code == 429

    response = _login(client, staff.email, PASSWORD, url=url)

    assert response.status_code == 429
    assert response["Retry-After"]
    assert "Too many attempts; try again in 15 minutes." in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert _login(Client(), staff.email, PASSWORD, url=url, address="10.0.0.2").status_code == 429


def test_the_lock_ends_after_the_lockout(settings):
    settings.LOGIN_LOCKOUT_S = 60
    for _ in range(5):
        login_throttle.login_failure_record(email="a@example.com", address="10.0.0.1", now=1000)
    assert (
        login_throttle.login_lock_remaining(email="a@example.com", address="10.0.0.2", now=1001)
        == 59
    )
    assert (
        login_throttle.login_lock_remaining(email="a@example.com", address="10.0.0.2", now=1060)
        == 0
    )


def test_the_message_counts_whole_minutes():
    assert login_throttle.login_throttle_message(900) == (
        "Too many attempts; try again in 15 minutes."
    )
    assert login_throttle.login_throttle_message(61) == "Too many attempts; try again in 2 minutes."
    assert login_throttle.login_throttle_message(5) == "Too many attempts; try again in 1 minute."


def test_behind_a_trusted_proxy_each_client_address_is_counted_apart(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    user = _owner()
    proxy = {"REMOTE_ADDR": "10.0.0.50"}
    for n in range(3):
        Client().post(
            reverse("login"),
            {"username": f"guess{n}@example.com", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="10.1.1.1",
            **proxy,
        )

    def login_from(address):
        return Client().post(
            reverse("login"),
            {"username": user.email, "password": PASSWORD},
            HTTP_X_FORWARDED_FOR=f"1.2.3.4, {address}",  # the client's own claim comes first
            **proxy,
        )

    assert login_from("10.1.1.1").status_code == 429
    assert login_from("10.1.1.2").status_code == 302


def test_logins_without_a_request_are_not_throttled(client):
    user = _owner()
    for _ in range(6):
        _login(client, user.email, "wrong")
    assert Client().login(username=user.email, password=PASSWORD)


def test_with_redis_unreachable_the_throttle_steps_aside_and_people_can_log_in(settings, client):
    """The counters live in Redis; when it is down, logging in (and failing to) still works
    instead of answering 500."""
    user = _owner()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    }
    wrong = _login(client, user.email, "wrong")
    assert wrong.status_code == 200
    assert "Enter a correct email and password." in wrong.content.decode()
    right = _login(client, user.email, PASSWORD)
    assert right.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
