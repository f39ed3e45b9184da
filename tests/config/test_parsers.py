"""config/strict_json.py and config/api/parsers.py: strict JSON (no NUL, no lone surrogate,
bounded depth) and bounded bodies, for the API's parser, the Stripe webhook and web forms;
config/api/serializers.py: nothing sent is silently ignored. (Through the endpoints:
tests/generations/test_api.py and friends.)"""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.test import RequestFactory
from rest_framework import serializers

from config import errors
from config.api.middleware import ProblemJSONMiddleware
from config.api.parsers import StrictJSONParser
from config.api.serializers import QuerySerializer, StrictSerializer
from config.strict_json import MAX_DEPTH, HostileJSON, loads_strict


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": "x\\u0000y"}', "NUL"),
        ('{"a\\u0000": 1}', "in a key"),
        ('["\\ud800"]', "surrogate"),
        ('{"\\udc00": 1}', "surrogate"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "Nested deeper"),
        ('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "Nested deeper"),
        ("[" * 100_000, "Nested deeper"),  # a RecursionError inside json
        ("{", "Not valid JSON"),
        (b"\xff", "Not UTF-8"),
    ],
)
def test_hostile_json_is_refused_with_a_clear_reason(text, message):
    with pytest.raises(HostileJSON, match=message):
        loads_strict(text)


def test_ordinary_json_passes_including_paired_surrogates_and_max_depth():
    assert loads_strict('{"emoji": "\\ud83d\\ude00", "ok": [1, 2.5, null, true]}') == {
        "emoji": "😀",
        "ok": [1, 2.5, None, True],
    }
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_strict(deep) is not None


def test_the_parser_refuses_a_body_over_the_upload_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    parser = StrictJSONParser()
    assert parser.parse(io.BytesIO(b'{"a": "' + b"x" * 80 + b'"}')) == {"a": "x" * 80}
    with pytest.raises(errors.PayloadTooLarge, match="larger than 100 bytes"):
        parser.parse(io.BytesIO(b'{"a": "' + b"x" * 200 + b'"}'))
    with pytest.raises(errors.ValidationError, match="NUL"):
        parser.parse(io.BytesIO(b'{"a": "\\u0000"}'))


def test_request_data_too_big_outside_drf_is_a_413_problem(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
    request = RequestFactory().post("/api/v1/generations/")
    response = ProblemJSONMiddleware(lambda r: None).process_exception(
        request, RequestDataTooBig("too big")
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert (body["code"], body["instance"]) == ("payload_too_large", "/api/v1/generations/")
    assert "2,621,440 bytes" in body["detail"]


@pytest.mark.django_db
def test_payload_too_large_has_a_problem_type_page(client):
    body = client.get("/api/problems/payload_too_large/").json()
    assert (body["code"], body["status"]) == ("payload_too_large", 413)


class Body(StrictSerializer):
    name = serializers.CharField()
    id = serializers.IntegerField(read_only=True)


class Query(QuerySerializer):
    status = serializers.ChoiceField(choices=["a", "b"], required=False)
    group_by = serializers.ChoiceField(choices=["day"], default="day")
    note = serializers.CharField(required=False, allow_blank=True)


def test_strict_serializer_refuses_unknown_and_read_only_fields_naming_them():
    body = Body(data={"name": "x", "nmae": "y", "id": 3})
    assert not body.is_valid()
    assert set(body.errors) == {"nmae", "id"}
    assert "Unknown field (expected `name`)" in str(body.errors["nmae"][0])
    assert Body(data={"name": "x"}).is_valid()


def test_query_serializer_refuses_empty_parameters_unless_blank_is_allowed():
    from django.http import QueryDict

    query = Query(data=QueryDict("status=&group_by=&note=&cursor=abc"))
    assert not query.is_valid()
    assert set(query.errors) == {"status", "group_by"}
    ok = Query(data=QueryDict("note=&cursor=abc"))
    assert ok.is_valid(), ok.errors
    assert ok.validated_data == {"group_by": "day", "note": ""}
