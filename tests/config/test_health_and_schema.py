"""/healthz and the OpenAPI schema's quality (documented responses, no generator warnings)."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_redis_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "broker": "ok"},
    }


@pytest.fixture(scope="module")
def schema(django_db_blocker, tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "schema.json"
    with django_db_blocker.unblock():
        call_command(
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--format",
            "openapi-json",
            "--file",
            str(out),
        )
    return json.loads(out.read_text())


def test_schema_generates_and_validates_without_warnings(schema):
    assert schema["openapi"].startswith("3.")


def test_problem_component_documents_the_error_body(schema):
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    for code in ("validation_error", "authentication_failed", "rate_limited", "server_busy"):
        assert code in problem["properties"]["code"]["description"]


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/api/v1/organization/", {"401", "403", "429"}),
        ("/api/v1/api-keys/", {"400", "401", "403", "429"}),
    ],
)
def test_endpoints_document_problem_json_errors(schema, path, statuses):
    responses = schema["paths"][path]["get"]["responses"]
    assert "200" in responses
    for status in statuses:
        content = responses[status]["content"]
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }


def _parameters(schema, path, method="get") -> dict[str, dict]:
    return {p["name"]: p["schema"] for p in schema["paths"][path][method].get("parameters", [])}


def test_parameters_declare_their_formats_and_bounds(schema):
    submit = _parameters(schema, "/api/v1/generations/", "post")
    assert submit["Idempotency-Key"] == {"type": "string", "minLength": 1, "maxLength": 255}
    listing = _parameters(schema, "/api/v1/generations/")
    assert listing["page_size"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert listing["cursor"]["type"] == "string"
    usage = _parameters(schema, "/api/v1/usage/")
    assert {s["format"] for s in usage["start"]["oneOf"]} == {"date", "date-time"}
    costs = _parameters(schema, "/api/v1/costs/unit-costs/")
    assert costs["start"]["format"] == costs["end"]["format"] == "date"
    assert _parameters(schema, "/api/v1/generations/{id}/")["id"]["format"] == "uuid"


def test_write_endpoints_document_the_413(schema):
    for path in ("/api/v1/generations/", "/api/v1/costs/pools/"):
        assert "413" in schema["paths"][path]["post"]["responses"], path


def test_endpoints_document_bearer_api_key_security(schema):
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert {"apiKey": []} in schema["paths"]["/api/v1/organization/"]["get"]["security"]


def test_interactive_docs_page_loads(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
