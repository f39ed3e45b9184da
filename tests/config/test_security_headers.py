"""Production security headers (HSTS, the proxy's X-Forwarded-Proto) and the
Content-Security-Policy, with a browser-free check that the pages need nothing it forbids."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from generations import services as generation_services
from tests.factories import make_ai_model, make_org

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json
import django
django.setup()
from django.conf import settings
from django.test import Client

def headers(**extra):
    response = Client().get("/api/v1/organization/", **extra)
    return {
        "is_secure": response.wsgi_request.is_secure(),
        "hsts": response.headers.get("Strict-Transport-Security"),
        "csp": response.headers.get("Content-Security-Policy"),
    }

print(json.dumps({
    "hsts_seconds": settings.SECURE_HSTS_SECONDS,
    "proxy_header": settings.SECURE_PROXY_SSL_HEADER,
    "https": headers(secure=True),
    "forwarded": headers(HTTP_X_FORWARDED_PROTO="https"),
}))
"""


def _production(**env) -> dict:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "test-" + "x" * 50,
        "ALLOWED_HOSTS": "testserver",
        **env,
    }
    for name in ("TRUST_X_FORWARDED_PROTO", "SECURE_HSTS_SECONDS"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_sends_hsts_for_a_year_with_subdomains_and_the_csp():
    probe = _production()

    assert probe["hsts_seconds"] == 31_536_000
    assert probe["https"]["is_secure"] is True
    assert probe["https"]["hsts"] == "max-age=31536000; includeSubDomains"
    csp = probe["https"]["csp"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_production_trusts_x_forwarded_proto_only_when_configured():
    untrusted = _production()
    assert untrusted["proxy_header"] is None
    assert untrusted["forwarded"]["is_secure"] is False  # a client can't claim HTTPS
    assert untrusted["forwarded"]["hsts"] is None

    trusted = _production(TRUST_X_FORWARDED_PROTO="true")
    assert trusted["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert trusted["forwarded"]["is_secure"] is True
    assert trusted["forwarded"]["hsts"] == "max-age=31536000; includeSubDomains"


# --- The pages satisfy the CSP ----------------------------------------------------------------

# What `script-src 'self'; style-src 'self'` (no 'unsafe-inline', no nonce) forbids in markup.
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
_STYLE_ELEMENT = re.compile(r"<style\b", re.I)
_STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I)
_EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
_JS_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)
_HTMX_EVAL = re.compile(r"""\shx-on[:-]|\shx-vals\s*=\s*["']\s*js:|hx-vars=""", re.I)


def _violations(html: str) -> list[str]:
    found = []
    for name, pattern in (
        ("inline <script>", _INLINE_SCRIPT),
        ("<style> element", _STYLE_ELEMENT),
        ('style="" attribute', _STYLE_ATTRIBUTE),
        ("event-handler attribute", _EVENT_HANDLER),
        ("javascript: URL", _JS_URL),
        ("htmx code in an attribute", _HTMX_EVAL),
    ):
        found += [f"{name}: {m.group(0)[:120]}" for m in pattern.finditer(html)]
    return found


def test_the_violation_finder_finds_each_kind():
    for markup in (
        "<script>alert(1)</script>",
        '<script type="module">x</script>',
        "<style>p{}</style>",
        '<span style="width: 5%">',
        '<button onclick="go()">',
        '<a href="javascript:go()">',
        '<div hx-on:click="go()">',
    ):
        assert _violations(markup), markup
    assert _violations('<script src="/static/js/app.js" defer></script><p data-x="1">') == []


@pytest.fixture
def pages(db, client, settings):
    """Every main page, with data on it: a funded organization with overage (meters), a
    succeeded job (its result preview), a staff user for the staff pages and the admin."""
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    org = make_org(name="Pages Co", plan="starter")
    owner = org.memberships.get().user
    owner.is_staff = owner.is_superuser = True
    owner.save()
    make_ai_model("sdxl", params_schema={"type": "object", "properties": {}})
    job, _ = generation_services.generation_submit(
        organization=org, model_slug="sdxl", params={}, user=owner
    )
    assert generation_services.generation_run(job_id=job.pk) == "succeeded"
    anonymous = [
        reverse("login"),
        reverse("signup"),
        reverse("signup_sent"),
        reverse("password_reset"),
        reverse("admin:login"),
        "/no-such-page/",
    ]
    signed_in = [
        reverse("dashboard"),
        reverse("members"),
        reverse("api_keys"),
        reverse("organization_create"),
        "/credits/",
        "/credits/ledger/",
        "/credits/billing/",
        "/generate/",
        "/generate/jobs/",
        f"/generate/jobs/{job.pk}/",
        f"/generate/jobs/{job.pk}/status/",
        "/staff/costs/",
        "/staff/pricing/",
        "/admin/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{owner.pk}/change/",
    ]
    return client, owner, anonymous, signed_in, f"/generate/jobs/{job.pk}/"


def test_every_main_page_has_the_csp_and_nothing_it_would_block(pages):
    client, owner, anonymous, signed_in, job_url = pages
    rendered = {}
    for url in anonymous:
        rendered[url] = client.get(url)
    client.force_login(owner)
    for url in signed_in:
        rendered[url] = client.get(url)

    problems = []
    for url, response in rendered.items():
        assert response.status_code in (200, 404), (url, response.status_code)
        assert "script-src 'self'" in response["Content-Security-Policy"], url
        problems += [f"{url}: {v}" for v in _violations(response.content.decode())]
    assert problems == [], "\n".join(problems)
    # The pages with data-driven sizes carry them as data attributes (static/js/app.js).
    assert "data-meter-pct=" in rendered["/credits/"].content.decode()
    assert "data-hue=" in rendered[job_url].content.decode()


@pytest.mark.django_db
def test_htmx_runs_without_eval_or_its_own_style_element(client):
    body = client.get(reverse("login")).content.decode()
    config = re.search(r"""<meta name="htmx-config" content='([^']*)'>""", body).group(1)
    assert json.loads(config) == {"allowEval": False, "includeIndicatorStyles": False}


@pytest.mark.django_db
def test_the_api_docs_load_their_script_from_a_url_and_allow_only_inline_styles(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    body = response.content.decode()
    assert _INLINE_SCRIPT.search(body) is None
    script = re.search(r'<script src="([^"]*script=[^"]*)"', body).group(1)
    assert client.get(script.replace("&amp;", "&")).status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self';" in csp + ";"
    assert "style-src 'self' 'unsafe-inline'" in csp
