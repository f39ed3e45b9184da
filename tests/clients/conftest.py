"""The typed Python client (clients/python, package `gpucredits_client`) is not installed in the
venv: its directory goes on sys.path here, so `make test` imports the checked-in source."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "python"
if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))


@pytest.fixture
def openapi_schema(client) -> dict:
    """/api/schema/ as JSON, fetched with Django's test client."""
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content[:500]
    import json

    return json.loads(response.content)
