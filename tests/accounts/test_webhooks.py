"""Outbound webhooks (accounts.webhooks): signed deliveries to a real local receiver, the
documented verifier, retries with backoff and their log, at-least-once without double sends,
disabling a failing endpoint with an email, secret rotation, URL validation, the outbox."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import Role
from accounts.tasks import webhook_deliver, webhook_sweep
from accounts.webhooks import services, signing
from accounts.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from accounts.webhooks.signing import SignatureVerificationError, verify
from accounts.webhooks.urls_check import url_validate
from config.errors import ValidationError
from credits import services as credit_services
from generations import services as generation_services
from tests.accounts.webhook_receiver import start_receiver
from tests.factories import add_member, make_ai_model, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def org():
    return make_org(slug="acme", plan="starter")


def endpoint_for(org, url, types=("generation.succeeded", "generation.failed")):
    return services.webhook_endpoint_create(
        organization=org, url=url, event_types=list(types), actor=None
    )


def run_job(org, prompt="a lighthouse"):
    job, _ = generation_services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt, "seed": 1}
    )
    return job, generation_services.generation_run(job_id=job.pk)


def delivery_of(endpoint) -> WebhookDelivery:
    return WebhookDelivery.objects.get(endpoint=endpoint)


def test_a_succeeded_generation_is_delivered_signed_to_the_receiver(
    settings, receiver, org, django_capture_on_commit_callbacks
):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    make_ai_model("sdxl", credits="5")
    endpoint, secret = endpoint_for(org, receiver.url)

    job, outcome = run_job(org)
    assert outcome == "succeeded"
    delivery = delivery_of(endpoint)  # the outbox row, written in the job's transaction
    assert delivery.event.type == "generation.succeeded"

    assert webhook_deliver(delivery.pk) == "delivered"  # what the queued task does

    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    header = received.headers[signing.HEADER]
    assert verify(received.body, header, secret) is True
    body = json.loads(received.body)
    assert body["type"] == "generation.succeeded"
    assert body["id"] == delivery.event.public_id and body["id"].startswith("evt_")
    assert body["organization"] == "acme"
    assert body["data"]["id"] == str(job.pk)
    assert body["data"]["status"] == "succeeded"
    assert body["data"]["credits_charged"] == "5.000"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert list(delivery.attempt_log.values_list("number", "status_code")) == [(1, 200)]


def test_the_delivery_task_is_queued_when_the_event_commits(
    settings, receiver, org, django_capture_on_commit_callbacks
):
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    with django_capture_on_commit_callbacks() as callbacks:
        credit_services.organization_grant(
            organization=org, amount="10", source="promo", reason="hi", idempotency_key="g1"
        )
    assert callbacks  # a delivery task after commit, not before
    delivery = delivery_of(endpoint)
    assert delivery.event.type == "credits.granted"
    assert delivery.event.payload["amount"] == "10.000"
    assert delivery.event.payload["source"] == "promo"


def test_a_failed_generation_is_an_event_too(settings, receiver, org):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    make_ai_model("sdxl", credits="5")
    endpoint, _ = endpoint_for(org, receiver.url, types=["generation.failed"])

    _, outcome = run_job(org, prompt="[fail] please")

    assert outcome == "failed"
    event = delivery_of(endpoint).event
    assert event.type == "generation.failed"
    assert event.payload["error"]["code"] == "gpu_failure"
    assert event.payload["credits_charged"] == "0.000"


def test_no_endpoint_no_event_and_other_types_are_not_sent(org, receiver):
    endpoint_for(org, receiver.url, types=["invoice.paid"])
    credit_services.organization_grant(
        organization=org, amount="1", source="promo", reason="x", idempotency_key="g2"
    )
    assert not WebhookEvent.objects.filter(type="credits.granted").exists()


def test_the_verifier_rejects_a_tampered_body_a_wrong_secret_and_an_old_timestamp():
    body = b'{"id":"evt_1","type":"generation.succeeded"}'
    now = int(time.time())
    header = signing.header_value(body, secrets=["whsec_right"], timestamp=now)

    assert verify(body, header, "whsec_right") is True
    assert verify(body.decode(), header, "whsec_right") is True
    with pytest.raises(SignatureVerificationError):
        verify(body.replace(b"succeeded", b"failed"), header, "whsec_right")
    with pytest.raises(SignatureVerificationError):
        verify(body, header, "whsec_wrong")
    with pytest.raises(SignatureVerificationError):
        verify(body, header, "whsec_right", now=now + 301)
    assert verify(body, header, "whsec_right", tolerance=600, now=now + 301)
    for bad in ("", "t=abc,v1=00", f"t={now}", "v1=abcd", "garbage"):
        with pytest.raises(SignatureVerificationError):
            verify(body, bad, "whsec_right")


def test_the_header_is_exactly_t_and_v1_hmac_of_t_dot_body():
    import hashlib
    import hmac

    body = b"{}"
    header = signing.header_value(body, secrets=["s3cret"], timestamp=1700000000)
    expected = hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_a_failing_receiver_is_retried_with_backoff_and_each_attempt_is_logged(
    settings, receiver, org
):
    settings.WEBHOOKS_RETRY_BASE_S = 60
    receiver.status = 500
    endpoint, secret = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g3"
    )
    delivery = delivery_of(endpoint)
    t0 = timezone.now()

    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=t0) == "retry"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=60)
    assert delivery.last_status_code == 500
    # not due yet: nothing is sent
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=t0) == "skipped"
    assert services.webhook_deliveries_due(now=t0 + timedelta(seconds=59)) == []
    assert services.webhook_deliveries_due(now=t0 + timedelta(seconds=60)) == [delivery.pk]

    t1 = t0 + timedelta(seconds=60)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=t1) == "retry"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t1 + timedelta(seconds=120)  # doubled

    receiver.status = 204
    t2 = t1 + timedelta(seconds=120)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=t2) == "delivered"

    log = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.status_code, a.at) for a in log] == [
        (1, 500, t0),
        (2, 500, t1),
        (3, 204, t2),
    ]
    assert log[0].error == "HTTP 500" and log[0].next_attempt_at == t1
    assert len(receiver.requests) == 3
    assert {json.loads(r.body)["id"] for r in receiver.requests} == {delivery.event.public_id}
    for received in receiver.requests:  # every attempt is signed
        verify(received.body, received.headers[signing.HEADER], secret)
    endpoint.refresh_from_db()
    assert endpoint.failure_streak == 0 and endpoint.enabled


def test_a_redelivered_task_does_not_send_a_delivered_event_again(receiver, org):
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g4"
    )
    delivery = delivery_of(endpoint)

    assert webhook_deliver(delivery.pk) == "delivered"
    assert webhook_deliver(delivery.pk) == "skipped"  # acks_late redelivery, a duplicate
    assert webhook_sweep() == 0

    assert len(receiver.requests) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_claimed_delivery_is_left_alone_by_a_concurrent_task(receiver, org):
    """While one attempt is in flight (claimed), another task for it finds nothing to do."""
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g5"
    )
    delivery = delivery_of(endpoint)
    now = timezone.now()
    claim = services._claim(delivery.pk, now)
    assert claim is not None and claim.number == 1
    assert services._claim(delivery.pk, now) is None
    assert services.webhook_deliveries_due(now=now) == []


def test_retries_stop_after_the_window(settings, receiver, org):
    receiver.status = 503
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g6"
    )
    delivery = delivery_of(endpoint)
    late = delivery.event.created_at + timedelta(hours=settings.WEBHOOKS_RETRY_WINDOW_H)

    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=late) == "gave_up"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None


def test_an_endpoint_failing_long_enough_is_disabled_with_an_email_to_owners_and_admins(
    settings, receiver, org, django_capture_on_commit_callbacks
):
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 3
    settings.WEBHOOKS_DISABLE_AFTER_H = 2
    settings.WEBHOOKS_RETRY_BASE_S = 60
    receiver.status = 500
    admin = add_member(org, role=Role.ADMIN).user
    member = add_member(org, role=Role.MEMBER).user
    owner = org.memberships.get(role=Role.OWNER).user
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g7"
    )
    delivery = delivery_of(endpoint)
    t0 = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [
            services.webhook_delivery_attempt(delivery_id=delivery.pk, now=t0 + timedelta(hours=h))
            for h in (0, 1, 2)  # 3 failures in a row, 2 hours apart at the end
        ]

    assert outcomes == ["retry", "retry", "disabled"]
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.failure_streak == 3
    assert "3 failed deliveries" in endpoint.disabled_reason
    assert len(mail.outbox) == 1
    assert set(mail.outbox[0].to) == {owner.email, admin.email}
    assert member.email not in mail.outbox[0].to
    assert receiver.url in mail.outbox[0].body
    # a disabled endpoint is not tried, nor swept
    later = t0 + timedelta(hours=5)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk, now=later) == "skipped"
    assert services.webhook_deliveries_due(now=later) == []
    assert len(receiver.requests) == 3


def test_three_quick_failures_do_not_disable_before_the_time_has_passed(settings, receiver, org):
    settings.WEBHOOKS_DISABLE_AFTER_FAILURES = 2
    settings.WEBHOOKS_DISABLE_AFTER_H = 24
    settings.WEBHOOKS_RETRY_BASE_S = 1
    receiver.status = 500
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g8"
    )
    delivery = delivery_of(endpoint)
    t0 = timezone.now()
    for s in (0, 10, 20):
        services.webhook_delivery_attempt(delivery_id=delivery.pk, now=t0 + timedelta(seconds=s))
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failure_streak == 3


def test_after_a_rotation_both_secrets_sign_for_24_hours(settings, receiver, org):
    endpoint, old_secret = endpoint_for(org, receiver.url, types=["credits.granted"])
    endpoint, new_secret = services.webhook_endpoint_rotate_secret(endpoint=endpoint, actor=None)
    assert new_secret != old_secret

    services.webhook_test_send(endpoint=endpoint, actor=None)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint, event__type="webhook.test")
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "delivered"
    received = receiver.requests[-1]
    header = received.headers[signing.HEADER]
    assert header.count("v1=") == 2
    verify(received.body, header, new_secret)
    verify(received.body, header, old_secret)

    now = timezone.now()
    assert endpoint.signing_secrets(now + timedelta(hours=23)) == [new_secret, old_secret]
    assert endpoint.signing_secrets(now + timedelta(hours=25)) == [new_secret]


def test_resend_makes_a_new_delivery_of_the_same_event(receiver, org):
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g9"
    )
    first = delivery_of(endpoint)
    services.webhook_delivery_attempt(delivery_id=first.pk)

    again = services.webhook_delivery_resend(delivery=first, actor=None)
    assert services.webhook_delivery_attempt(delivery_id=again.pk) == "delivered"

    ids = [json.loads(r.body)["id"] for r in receiver.requests]
    assert ids == [first.event.public_id, first.event.public_id]


def test_an_event_reported_twice_is_emitted_once(org, receiver):
    endpoint_for(org, receiver.url, types=["invoice.paid"])
    for _ in range(2):
        services.webhook_event_emit(
            organization=org, type="invoice.paid", payload={"invoice": "in_1"}, dedupe_key="k"
        )
    assert WebhookEvent.objects.filter(type="invoice.paid").count() == 1


def test_staff_endpoints_get_staff_events_and_organizations_cannot_subscribe_to_them(org, receiver):
    staff_endpoint, _ = services.webhook_endpoint_create(
        organization=None, url=receiver.url, event_types=["alert.opened"], actor=None
    )
    with pytest.raises(ValidationError):
        endpoint_for(org, receiver.url, types=["alert.opened"])
    event = services.webhook_event_emit(
        organization=None, type="alert.opened", payload={"alert": 1}
    )
    assert event is not None
    assert list(event.deliveries.values_list("endpoint_id", flat=True)) == [staff_endpoint.pk]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
        "not a url",
        "https://resolves-inside.example/hook",  # a name that resolves to a private address
    ],
)
def test_urls_inside_our_network_or_without_https_are_refused_in_production(
    settings, monkeypatch, url
):
    settings.WEBHOOKS_REQUIRE_HTTPS = True
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        if host == "resolves-inside.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))]
        if host == "public.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(ValidationError) as exc:
        url_validate(url)
    assert "url" in exc.value.errors
    assert url_validate("https://public.example/hook") == "https://public.example/hook"
    assert url_validate("https://93.184.216.34/hook") == "https://93.184.216.34/hook"


def test_a_stored_url_that_now_points_inside_is_not_called(settings, receiver, org):
    endpoint, _ = endpoint_for(org, receiver.url, types=["credits.granted"])
    credit_services.organization_grant(
        organization=org, amount="10", source="promo", reason="x", idempotency_key="g10"
    )
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    delivery = delivery_of(endpoint)
    assert services.webhook_delivery_attempt(delivery_id=delivery.pk) == "retry"
    assert receiver.requests == []
    assert "public address" in WebhookAttempt.objects.get(delivery=delivery).error


def test_members_cannot_manage_endpoints(org, receiver):
    member = add_member(org, role=Role.MEMBER).user
    from config.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.webhook_endpoint_create(
            organization=org, url=receiver.url, event_types=["invoice.paid"], actor=member
        )
    assert not WebhookEndpoint.objects.exists()


def test_the_verification_code_in_the_docs_works_as_documented():
    """docs/webhooks.md's copy-paste verifier accepts our signature and rejects a tampered one."""
    import re
    from pathlib import Path

    from django.conf import settings

    text = (Path(settings.BASE_DIR) / "docs" / "webhooks.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)  # our own docs
    body = b'{"id":"evt_1"}'
    header = signing.header_value(body, secrets=["whsec_x"], timestamp=int(time.time()))
    assert namespace["verify"](body, header, "whsec_x") is True
    with pytest.raises(namespace["SignatureVerificationError"]):
        namespace["verify"](body + b" ", header, "whsec_x")
    with pytest.raises(namespace["SignatureVerificationError"]):
        namespace["verify"](body, header, "whsec_y")
