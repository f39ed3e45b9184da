"""Billing test fixtures: Stripe settings, a recording fake gateway, organizations linked to
Stripe customers, and localstripe started as a subprocess on a free local port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from accounts.models import Plan
from credits.billing import gateway as gw
from credits.billing.catalog import packs_ensure_defaults
from credits.billing.models import StripeCustomer
from tests.billing.fake_gateway import FakeGateway
from tests.billing.stripe_events import SECRET
from tests.factories import ensure_default_plans, make_org

PRICES = {
    "starter": "price_starter_test",
    "creator": "price_creator_test",
    "studio": "price_studio_test",
}


@pytest.fixture(autouse=True)
def _stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_billing"
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_LEGACY_PLANS = False
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.SITE_URL = "https://app.example.test"


@pytest.fixture
def catalog(db):
    """Default plans (with test Stripe price ids) and packs: transactional tests flush them."""
    ensure_default_plans()
    packs_ensure_defaults()
    for slug, price in PRICES.items():
        Plan.objects.filter(slug=slug).update(stripe_price_id=price)


@pytest.fixture
def fake_gateway(monkeypatch) -> FakeGateway:
    fake = FakeGateway()
    monkeypatch.setattr(gw, "get_gateway", lambda: fake)
    return fake


def linked_org(slug: str, *, plan: str = "free", customer: str | None = None):
    """An organization whose Stripe customer exists (as the checkout service creates it)."""
    org = make_org(slug=slug, plan=plan)
    StripeCustomer.objects.create(
        organization=org, stripe_customer_id=customer or f"cus_{slug.replace('-', '_')}"
    )
    return org


# --- localstripe ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _localstripe_command() -> list[str]:
    script = Path(sys.executable).with_name("localstripe")
    if script.exists():
        return [str(script)]
    found = shutil.which("localstripe")
    if found:
        return [found]
    return [sys.executable, "-m", "localstripe"]


@pytest.fixture(scope="session")
def localstripe_url():
    """localstripe (a fake, stateful Stripe server) on a free port for the whole session."""
    try:
        import localstripe  # noqa: F401
    except ImportError:
        pytest.fail("localstripe is not installed: pip install -e '.[dev]'")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="localstripe-")
    log = open(os.path.join(workdir, "localstripe.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*_localstripe_command(), "--port", str(port), "--from-scratch"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError(
                "localstripe exited: " + Path(workdir, "localstripe.log").read_text()[-2000:]
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/v1/balance", timeout=1, auth=("sk_test_x", "")).ok:
                break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("localstripe did not start within 30 s")
        time.sleep(0.2)
    yield url
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log.close()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def localstripe(localstripe_url, settings):
    """The gateway pointed at localstripe (legacy plans: it has no Prices API)."""
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_SECRET_KEY = "sk_test_localstripe"
    settings.STRIPE_LEGACY_PLANS = True
    return localstripe_url
