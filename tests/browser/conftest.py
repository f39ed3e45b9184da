"""Playwright fixtures: headless Debian Chromium driving pytest-django's live_server.

Skipped when BROWSER_TESTS=skip or when /usr/bin/chromium is missing (`make test` installs it;
Playwright's own browser downloads are never used).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _skip_reason() -> str | None:
    if os.environ.get("BROWSER_TESTS", "").lower() == "skip":
        return "browser tests disabled by BROWSER_TESTS=skip"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(marker)


@pytest.fixture
def browser_page():
    """A fresh desktop-sized page. Playwright's sync API keeps an asyncio loop in the main
    thread, which makes Django refuse ORM calls there; allow them while the browser lives."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        # ORM calls made while Playwright's loop runs get their own connection (asgiref's
        # context-local storage); close it here, or it outlives the test database.
        connections.close_all()
        context.close()
        browser.close()
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def _reference_data(request):
    """Transactional tests start from an empty database (flushed by the test before), so
    re-create what the data migrations create: the default plans and credit packs. (Django's
    serialized_rollback would do it too, but clashes with the content types other
    transactional tests' flush re-creates.)"""
    if "transactional_db" not in request.fixturenames and not request.node.get_closest_marker(
        "django_db"
    ):
        return
    request.getfixturevalue("transactional_db")
    import importlib

    from accounts.services import plans_ensure_defaults
    from credits.billing.models import CreditPack

    plans_ensure_defaults()
    packs = importlib.import_module("credits.migrations.0004_default_credit_packs").PACKS
    for fields in packs:
        CreditPack.objects.get_or_create(slug=fields["slug"], defaults=fields)
