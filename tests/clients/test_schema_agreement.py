"""The client and /api/schema/ agree: every operation the client calls exists with the same
path, query and header parameters; every field its resource types read exists in the schema
component they name (and a field the client treats as always present is required there)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from gpucredits_client.client import OPERATIONS
from gpucredits_client.models import RESOURCES

pytestmark = pytest.mark.django_db

# SPEC endpoints the server does not serve yet. Strict: once the server grows one, its xfail
# turns into a failure, and it must leave this set (so the full check applies).
PENDING_OPERATIONS: set[str] = set()
PENDING_COMPONENTS: set[str] = set()

# What each operation's success answer is, as the client parses it.
RESPONSES = {
    "organization": ("200", "Organization", False),
    "models": ("200", "AIModel", True),
    "balance": ("200", "Balance", False),
    "quotas": ("200", "Quotas", False),
    "usage": ("200", "Usage", False),
    "generation_create": ("202", "Job", False),
    "generation_list": ("200", "PaginatedJobList", False),
    "generation_get": ("200", "Job", False),
    "generation_cancel": ("200", "Job", False),
    "generation_quote": ("200", "Quote", False),
    "usage_event_create": ("200", "UsageEventResult", False),
}
# Nested components the resource types read (schema component -> items/field component).
NESTED = {
    ("Organization", "plan"): "Plan",
    ("Organization", "subscription"): "Subscription",
    ("Job", "error"): "JobError",
    ("Balance", "grants"): "Grant",
    ("Balance", "next_expiry"): "NextExpiry",
    ("Quotas", "quotas"): "Quota",
    ("Usage", "rows"): "UsageRow",
    ("Usage", "totals"): "UsageTotals",
    ("PaginatedJobList", "results"): "Job",
}


def _pending(names):
    return [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="not served yet (SPEC §7)"))
        if n in PENDING_OPERATIONS | PENDING_COMPONENTS
        else n
        for n in names
    ]


def _ref_name(schema: dict) -> str | None:
    """The component a (possibly allOf-wrapped or array) schema refers to."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key, []):
            name = _ref_name(sub)
            if name:
                return name
    if schema.get("type") == "array":
        return _ref_name(schema.get("items", {}))
    return None


@pytest.mark.parametrize("name", _pending(sorted(OPERATIONS)))
def test_each_client_operation_exists_in_the_schema_with_the_same_parameters(openapi_schema, name):
    op = OPERATIONS[name]
    paths = openapi_schema["paths"]
    assert op.path in paths, f"{op.path} is not in the schema"
    operation = paths[op.path].get(op.method.lower())
    assert operation is not None, f"{op.method} {op.path} is not in the schema"
    params = operation.get("parameters", [])

    def names(where):
        return {p["name"] for p in params if p["in"] == where}

    assert names("query") == set(op.query)
    assert {h.lower() for h in names("header")} == {h.lower() for h in op.headers}
    assert names("path") == set(re.findall(r"{(\w+)}", op.path))

    if name in RESPONSES:
        status, component, is_list = RESPONSES[name]
        response = operation["responses"][status]
        body = response["content"]["application/json"]["schema"]
        assert _ref_name(body) == component
        assert (body.get("type") == "array") == is_list


def test_the_submission_body_the_client_sends_matches_the_request_schema(openapi_schema):
    body = openapi_schema["paths"]["/api/v1/generations/"]["post"]["requestBody"]
    ref = _ref_name(body["content"]["application/json"]["schema"])
    component = openapi_schema["components"]["schemas"][ref]
    # Client.submit sends exactly {"model": ..., "params": ...}.
    assert set(component["required"]) <= {"model", "params"} <= set(component["properties"])


def _resources_by_component():
    return {cls.__component__: cls for cls in RESOURCES}


@pytest.mark.parametrize("component", _pending(sorted(_resources_by_component())))
def test_each_field_the_client_reads_exists_in_the_schema_component(openapi_schema, component):
    cls = _resources_by_component()[component]
    schemas = openapi_schema["components"]["schemas"]
    assert component in schemas, f"component {component} is not in the schema"
    properties = schemas[component]["properties"]
    required = set(schemas[component].get("required", []))
    for field in dataclasses.fields(cls):
        assert field.name in properties, f"{component}.{field.name} is not in the schema"
        optional = "None" in str(field.type) or "Any" in str(field.type)
        prop = properties[field.name]
        if not optional:
            assert field.name in required, f"{component}.{field.name} is not required"
            assert not prop.get("nullable"), f"{component}.{field.name} may be null"
        nested = NESTED.get((component, field.name))
        if nested:
            assert _ref_name(prop) == nested
            assert nested in _resources_by_component()


def test_every_status_a_job_can_have_is_known_to_the_client(openapi_schema):
    from gpucredits_client.models import FINAL_STATUSES, JobStatus

    enum = set(openapi_schema["components"]["schemas"]["JobStatusEnum"]["enum"])
    assert enum == set(JobStatus.__args__)
    assert enum - {"queued", "running"} == FINAL_STATUSES


def test_every_problem_code_the_schema_documents_maps_to_a_typed_error(openapi_schema):
    from gpucredits_client.errors import ERRORS_BY_CODE

    described = openapi_schema["components"]["schemas"]["Problem"]["properties"]["code"]
    codes = set(re.findall(r"`(\w+)`", described["description"]))
    assert codes, "the schema lists no problem codes"
    assert codes <= set(ERRORS_BY_CODE)
