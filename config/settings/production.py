"""Production: secure cookies, HSTS and a Content-Security-Policy; SECRET_KEY and ALLOWED_HOSTS
must come from the environment.

- HSTS is on by default: `SECURE_HSTS_SECONDS` (default 31536000, one year; 0 turns it off),
  `SECURE_HSTS_INCLUDE_SUBDOMAINS` (default true), `SECURE_HSTS_PRELOAD` (default false).
- `X-Forwarded-Proto` decides whether a request came over HTTPS only when
  `TRUST_X_FORWARDED_PROTO` is true: set it when (and only when) the app runs behind a proxy
  that sets that header itself and strips it from clients' requests. Otherwise a client could
  claim HTTPS and defeat the secure-cookie and redirect checks.
- The Content-Security-Policy is the one in base settings (`CSP_*`), served everywhere.
- Plain-HTTP requests are redirected to HTTPS (`SECURE_SSL_REDIRECT`, default true) except
  `/healthz`, which load balancers and container health checks probe over plain HTTP inside the
  network. Behind a TLS-terminating proxy, set `TRUST_X_FORWARDED_PROTO` too (or the redirect
  loops).
- `manage.py check --deploy` is clean with these settings (tests/test_deployment.py). HSTS
  preload stays opt-in: submitting a domain to the browsers' preload list is a commitment for
  all its subdomains, so security.W021 is silenced while `SECURE_HSTS_PRELOAD` is false.
"""

from config.logs import logging_config
from config.settings.base import *  # noqa: F403
from config.settings.base import LOG_LEVEL, env

SECRET_KEY = env("SECRET_KEY")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
TRUST_X_FORWARDED_PROTO = env.bool("TRUST_X_FORWARDED_PROTO", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_X_FORWARDED_PROTO else None
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind PgBouncer in transaction mode: server-side cursors (QuerySet.iterator()) cannot
# outlive a transaction there (docs/deployment.md, "PgBouncer").
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool(  # noqa: F405
    "DATABASE_DISABLE_SERVER_SIDE_CURSORS", default=False
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# JSON log lines unless LOG_FORMAT says otherwise (docs/operations.md, "Logs and traces").
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)
