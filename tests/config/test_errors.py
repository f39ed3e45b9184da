"""RFC 9457 problem details for every kind of API error, and rollback of refused requests.

The tests marked `urls` run against this module's own URLconf (tiny views below)."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import AuditEvent
from config import errors
from tests.config.helpers import assert_problem, bearer
from tests.factories import make_org

pytestmark = pytest.mark.django_db


class _OpenView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class WriteThenFailView(_OpenView):
    """Writes inside its own atomic block, then refuses."""

    @transaction.atomic
    def post(self, request):
        AuditEvent.objects.create(action="test.inner_write")
        raise errors.InsufficientCredits("Needs 5 credits, 2 available.", needed="5.000")


class WriteThenSucceedView(_OpenView):
    def post(self, request):
        AuditEvent.objects.create(action="test.kept_write")
        return Response({"ok": True}, status=201)


class CrashView(_OpenView):
    def get(self, request):
        raise RuntimeError("boom")


class ValidationView(_OpenView):
    def post(self, request):
        from rest_framework import serializers

        class Body(serializers.Serializer):
            count = serializers.IntegerField(min_value=1)
            items = serializers.ListField(child=serializers.DictField(), required=False)

        Body(data=request.data).is_valid(raise_exception=True)
        return Response({})


urlpatterns = [
    path("api/t/inner/", WriteThenFailView.as_view()),
    path("api/t/ok/", transaction.atomic(WriteThenSucceedView.as_view())),
    path("api/t/crash/", CrashView.as_view()),
    path("api/t/validate/", ValidationView.as_view()),
]

THIS = "tests.config.test_errors"


@pytest.fixture
def raw_key():
    return services.api_key_create(organization=make_org(slug="acme"), name="k", actor=None)[1]


# --- rollback ---------------------------------------------------------------------------------


@pytest.mark.urls(THIS)
def test_service_error_in_atomic_view_rolls_back_and_renders_402(client):
    response = client.post("/api/t/inner/")
    body = assert_problem(response, status=402, code="insufficient_credits")
    assert body["detail"] == "Needs 5 credits, 2 available."
    assert body["needed"] == "5.000"  # extension member
    assert body["instance"] == "/api/t/inner/"
    assert not AuditEvent.objects.filter(action="test.inner_write").exists()


@pytest.mark.urls(THIS)
def test_successful_request_inside_a_transaction_keeps_its_writes(client):
    assert client.post("/api/t/ok/").status_code == 201
    assert AuditEvent.objects.filter(action="test.kept_write").exists()


@pytest.mark.urls(THIS)
def test_unexpected_exception_is_a_500_problem(client):
    response = client.get("/api/t/crash/")
    assert_problem(response, status=500, code="server_error")


@pytest.mark.urls(THIS)
def test_drf_validation_error_lists_errors_per_field(client):
    response = client.post(
        "/api/t/validate/", {"count": 0, "items": ["x"]}, content_type="application/json"
    )
    body = assert_problem(response, status=400, code="validation_error")
    assert set(body["errors"]) == {"count", "items.0"}
    assert body["detail"].startswith("count: ")


@pytest.mark.urls(THIS)
def test_malformed_json_body_is_a_validation_error(client):
    response = client.post("/api/t/validate/", "{nope", content_type="application/json")
    assert_problem(response, status=400, code="validation_error")


# --- the real URLconf -------------------------------------------------------------------------


def test_bad_cursor_is_a_400_validation_error(client, raw_key):
    response = client.get("/api/v1/api-keys/", {"cursor": "garbage"}, **bearer(raw_key))
    body = assert_problem(response, status=400, code="validation_error")
    assert "cursor" in body["errors"]


def test_unknown_api_url_is_a_404_problem(client, raw_key):
    assert_problem(client.get("/api/v1/nope/"), status=404, code="not_found")
    assert_problem(client.get("/api/v1/nope/", **bearer(raw_key)), status=404, code="not_found")


def test_unknown_url_outside_the_api_is_not_a_problem(client):
    response = client.get("/definitely-not-here/")
    assert response.status_code == 404
    assert response["Content-Type"] != "application/problem+json"


def test_wrong_method_is_a_405_problem_with_allow_header(client, raw_key):
    response = client.post("/api/v1/organization/", {}, **bearer(raw_key))
    assert_problem(response, status=405, code="method_not_allowed")
    assert "GET" in response["Allow"]
    assert "POST" not in response["Allow"]


# --- /api/problems/<code>/ --------------------------------------------------------------------


@pytest.mark.parametrize("error", errors.ALL_ERRORS, ids=lambda e: e.code)
def test_problem_type_uri_describes_its_code(client, error):
    response = client.get(f"/api/problems/{error.code}/")
    assert response.status_code == 200
    assert response.json() == {
        "code": error.code,
        "status": error.status_code,
        "title": error.title,
        "description": error.default_detail,
    }


def test_spec_error_codes_and_statuses():
    assert {e.code: e.status_code for e in errors.ALL_ERRORS} == {
        "validation_error": 400,
        "authentication_failed": 401,
        "insufficient_credits": 402,
        "permission_denied": 403,
        "not_found": 404,
        "idempotency_conflict": 409,
        "quota_exceeded": 429,
        "rate_limited": 429,
        "server_busy": 503,
    }


def test_unknown_problem_type_is_a_404_problem(client):
    assert_problem(client.get("/api/problems/nope/"), status=404, code="not_found")


def test_a_lost_database_connection_is_a_503_with_retry_after_not_a_500():
    """bench/chaos.py saw a submission answer 500 when its backend was terminated mid-request:
    the transaction rolled back, so the client is told to retry."""
    import json

    from django.db import OperationalError

    from config.api.exceptions import problem_exception_handler

    response = problem_exception_handler(
        OperationalError("terminating connection due to administrator command"), {}
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    body = json.loads(response.content)
    assert body["code"] == "server_busy"
    assert "administrator" not in body["detail"]  # no raw database wording
