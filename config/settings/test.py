"""Tests run on PostgreSQL (base settings refuse anything else) and Redis, found or started by
scripts/run_tests.py."""

import os
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, REDIS_URL

# Dev/test tools (the simulated ComfyUI GPU node, `manage.py run_gpu_node`): never in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]  # noqa: F405

if not REDIS_URL:
    raise ImproperlyConfigured(
        "Tests need Redis: set REDIS_URL=redis://... (make test finds or starts one)."
    )

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DATABASES["default"]["CONN_MAX_AGE"] = 0
CACHES["default"]["KEY_PREFIX"] = "gpucredits-test"  # noqa: F405
ALLOWED_HOSTS = ["*"]
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 - quiets WhiteNoise's warning
# The billing tests' fake Stripe (tests/billing/fake_gateway.py) sends Checkout and the Customer
# Portal to *.stripe.test: the CSP's form-action must let those redirects through.
CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"] += [  # noqa: F405
    "https://checkout.stripe.test",
    "https://billing.stripe.test",
]

# The finish spool (generations.services.spool) of a test process is its own: parallel test
# runs on other databases never drain each other's results. Tests that spool set their own.
if "GENERATIONS_SPOOL_DIR" not in os.environ:
    GENERATIONS_SPOOL_DIR = Path(tempfile.gettempdir()) / f"gpucredits-spool-{os.getpid()}"
# The webhook tests' receivers listen on 127.0.0.1 over http.
WEBHOOKS_REQUIRE_HTTPS = False
WEBHOOKS_ALLOW_PRIVATE = True
