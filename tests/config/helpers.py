"""Assertions and request helpers shared by the API tests."""

from __future__ import annotations


def bearer(raw_key: str) -> dict[str, str]:
    """Test-client kwargs for `Authorization: Bearer <raw_key>`."""
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def assert_problem(response, *, status: int, code: str) -> dict:
    """`response` is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "code"}
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/api/problems/{code}/"
    assert body["title"] and body["detail"]
    return body
