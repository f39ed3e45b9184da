"""Outbound webhooks through the API (/api/v1/webhooks/…) and the web page (/webhooks/):
the secret shown once, deliveries, resend, rotate, test event; tenant isolation (another
organization's endpoint or delivery is a 404); members look, owners and admins act."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts import services as account_services
from accounts.models import Role
from accounts.webhooks import services
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.config.helpers import assert_problem, bearer
from tests.factories import add_member, make_org

pytestmark = pytest.mark.django_db

BASE = "/api/v1/webhooks"
RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="starter")


@pytest.fixture
def globex():
    return make_org(slug="globex", plan="starter")


def key_of(org) -> str:
    return account_services.api_key_create(organization=org, name="k", actor=None)[1]


def endpoint_of(org, types=("invoice.paid",)):
    return services.webhook_endpoint_create(
        organization=org, url=RECEIVER, event_types=list(types), actor=None
    )[0]


def test_api_creates_an_endpoint_and_shows_its_secret_once(client, acme):
    auth = bearer(key_of(acme))
    response = client.post(
        f"{BASE}/endpoints/",
        {"url": RECEIVER, "event_types": ["generation.succeeded", "balance.low"]},
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["balance.low", "generation.succeeded"]
    endpoint = WebhookEndpoint.objects.get(pk=body["id"], organization=acme)

    listed = client.get(f"{BASE}/endpoints/", **auth).json()["results"]
    assert [e["id"] for e in listed] == [endpoint.pk]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(f"{BASE}/endpoints/{endpoint.pk}/", **auth).json()

    rotated = client.post(f"{BASE}/endpoints/{endpoint.pk}/rotate-secret/", **auth).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]


def test_api_refuses_bad_urls_and_unknown_event_types(client, acme, settings):
    auth = bearer(key_of(acme))
    response = client.post(
        f"{BASE}/endpoints/",
        {"url": RECEIVER, "event_types": ["alert.opened"]},
        content_type="application/json",
        **auth,
    )
    assert_problem(response, status=400, code="validation_error")
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    response = client.post(
        f"{BASE}/endpoints/",
        {"url": "http://10.0.0.1/x", "event_types": ["invoice.paid"]},
        content_type="application/json",
        **auth,
    )
    body = assert_problem(response, status=400, code="validation_error")
    assert "10.0.0.1" not in body["detail"]  # no echo of the input
    assert not WebhookEndpoint.objects.exists()


def test_api_is_tenant_isolated(client, acme, globex):
    theirs = endpoint_of(globex)
    services.webhook_test_send(endpoint=theirs, actor=None)
    their_delivery = WebhookDelivery.objects.get(endpoint=theirs)
    auth = bearer(key_of(acme))

    assert client.get(f"{BASE}/endpoints/", **auth).json()["results"] == []
    for method, url in [
        ("get", f"{BASE}/endpoints/{theirs.pk}/"),
        ("patch", f"{BASE}/endpoints/{theirs.pk}/"),
        ("delete", f"{BASE}/endpoints/{theirs.pk}/"),
        ("post", f"{BASE}/endpoints/{theirs.pk}/rotate-secret/"),
        ("post", f"{BASE}/endpoints/{theirs.pk}/test/"),
        ("get", f"{BASE}/endpoints/{theirs.pk}/deliveries/"),
        ("post", f"{BASE}/deliveries/{their_delivery.pk}/resend/"),
    ]:
        response = getattr(client, method)(url, content_type="application/json", **auth)
        assert_problem(response, status=404, code="not_found")
    theirs.refresh_from_db()
    assert theirs.enabled
    assert WebhookDelivery.objects.filter(endpoint=theirs).count() == 1


def test_api_test_event_deliveries_and_resend(client, acme):
    endpoint = endpoint_of(acme)
    auth = bearer(key_of(acme))

    sent = client.post(f"{BASE}/endpoints/{endpoint.pk}/test/", **auth)
    assert sent.status_code == 202
    assert sent.json()["type"] == "webhook.test"
    deliveries = client.get(f"{BASE}/endpoints/{endpoint.pk}/deliveries/", **auth).json()
    assert [d["id"] for d in deliveries["results"]] == [sent.json()["id"]]

    again = client.post(f"{BASE}/deliveries/{sent.json()['id']}/resend/", **auth)
    assert again.status_code == 202
    assert again.json()["event"] == sent.json()["event"]

    disabled = client.patch(
        f"{BASE}/endpoints/{endpoint.pk}/",
        {"enabled": False},
        content_type="application/json",
        **auth,
    )
    assert disabled.json()["enabled"] is False
    assert_problem(
        client.post(f"{BASE}/endpoints/{endpoint.pk}/test/", **auth),
        status=400,
        code="validation_error",
    )
    assert client.delete(f"{BASE}/endpoints/{endpoint.pk}/", **auth).status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_api_session_members_may_look_but_not_change(client, acme):
    member = add_member(acme, role=Role.MEMBER).user
    endpoint = endpoint_of(acme)
    client.force_login(member)
    client.get(reverse("dashboard"))
    assert client.get(f"{BASE}/endpoints/").status_code == 200
    response = client.post(f"{BASE}/endpoints/{endpoint.pk}/rotate-secret/")
    assert_problem(response, status=403, code="permission_denied")


def _login(client, user):
    client.force_login(user)
    client.get(reverse("dashboard"))
    return client


def test_page_creates_an_endpoint_and_shows_the_secret_once(client, acme):
    owner = acme.memberships.get(role=Role.OWNER).user
    _login(client, owner)
    assert client.get(reverse("webhooks:list")).status_code == 200

    response = client.post(
        reverse("webhooks:list"),
        {"url": RECEIVER, "description": "prod", "event_types": ["generation.succeeded"]},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get(organization=acme)
    body = response.content.decode()
    assert endpoint.secret in body
    assert "will not be shown again" in body

    detail = client.get(reverse("webhooks:detail", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in detail
    assert 'name="viewport"' in client.get(reverse("webhooks:list")).content.decode()


def test_page_refuses_a_bad_url_next_to_the_field(client, acme, settings):
    settings.WEBHOOKS_REQUIRE_HTTPS = True
    _login(client, acme.memberships.get(role=Role.OWNER).user)
    response = client.post(
        reverse("webhooks:list"), {"url": "http://example.com/x", "event_types": ["invoice.paid"]}
    )
    assert response.status_code == 200
    assert "must use https" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_page_test_event_resend_rotate_and_disable(client, acme):
    endpoint = endpoint_of(acme)
    _login(client, acme.memberships.get(role=Role.OWNER).user)

    response = client.post(reverse("webhooks:test", args=[endpoint.pk]), follow=True)
    assert "A test event is on its way" in response.content.decode()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert f"webhook-delivery-{delivery.pk}" in response.content.decode()

    client.post(reverse("webhooks:resend", args=[delivery.pk]))
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 2

    old = endpoint.secret
    rotated = client.post(reverse("webhooks:rotate", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert endpoint.secret in rotated.content.decode()

    client.post(reverse("webhooks:enabled", args=[endpoint.pk]), {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled


def test_page_other_organizations_endpoints_are_404_and_members_cannot_act(client, acme, globex):
    theirs = endpoint_of(globex)
    mine = endpoint_of(acme)
    member = add_member(acme, role=Role.MEMBER).user
    _login(client, member)

    assert client.get(reverse("webhooks:detail", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("webhooks:rotate", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("webhooks:detail", args=[mine.pk])).status_code == 200
    assert client.post(reverse("webhooks:rotate", args=[mine.pk])).status_code == 403
    page = client.get(reverse("webhooks:list")).content.decode()
    assert "Only owners and admins" in page


def test_admin_creates_a_staff_endpoint_and_shows_deliveries_read_only(client, acme):
    from accounts.models import User

    staff = User.objects.create_superuser(email="ops@example.com", password="x")
    client.force_login(staff)
    response = client.post(
        "/admin/accounts/webhookendpoint/add/",
        {"url": RECEIVER, "description": "ops", "event_types": ["alert.opened"], "enabled": "on"},
        follow=True,
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(organization=None)
    assert endpoint.secret in response.content.decode()  # shown once, in the message
    services.webhook_test_send(endpoint=endpoint, actor=None)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    for url in [
        "/admin/accounts/webhookendpoint/",
        f"/admin/accounts/webhookendpoint/{endpoint.pk}/change/",
        "/admin/accounts/webhookdelivery/",
        f"/admin/accounts/webhookdelivery/{delivery.pk}/change/",
        "/admin/accounts/webhookevent/",
    ]:
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/accounts/webhookdelivery/add/").status_code == 403


def test_page_deletes_an_endpoint_with_or_without_htmx(client, acme):
    first, second = endpoint_of(acme), endpoint_of(acme)
    _login(client, acme.memberships.get(role=Role.OWNER).user)

    response = client.post(reverse("webhooks:delete", args=[first.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("webhooks:list")
    response = client.post(reverse("webhooks:delete", args=[second.pk]), HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == reverse("webhooks:list")
    assert not WebhookEndpoint.objects.exists()
