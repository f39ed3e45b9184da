"""Settings shared by every environment, read from the environment by django-environ.

Every setting a deployment may change is listed in README.md (Configuration).
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="insecure-dev-key-change-me-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_NAME = env("SITE_NAME", default="GPU Credits")
# The public address of the web UI, for links in emails.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "csp",
    "accounts",
    "credits",
    "generations",
    "infra_costs",
    "operations",
    "planning",
]

MIDDLEWARE = [
    # First: every response (redirects and errors too) carries X-Request-ID and is logged.
    "config.logs.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.OrganizationMiddleware",
    "accounts.middleware.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.api.middleware.ProblemJSONMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Billing is one package (`credits/billing/`) with its own templates (`billing/…`) and
        # template library (`{% load billing_ui %}`); named here as a folder and a dotted path.
        "DIRS": [BASE_DIR / "templates", BASE_DIR / "credits" / "billing" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organization",
                "generations.context_processors.demo_history",
            ],
            "libraries": {"billing_ui": "credits.billing.templatetags.billing_ui"},
        },
    },
]

# --- Content-Security-Policy (django-csp), in every environment ------------------------------
# Pages load scripts and styles from our own origin only: no inline <script>, no style=""
# attributes, no event-handler attributes, no eval (htmx runs with allowEval off, see base.html).
# tests/config/test_security_headers.py renders the pages and checks they need nothing more.
# Forms may post to our origin, and the billing forms' redirects go on to Stripe Checkout and the
# Customer Portal (browsers apply form-action to those redirects): CSP_FORM_ACTION lists them.
# (Read into lower-case names: django-csp takes CSP_* settings for its old format.)
csp_form_action = env.list(
    "CSP_FORM_ACTION", default=["https://checkout.stripe.com", "https://billing.stripe.com"]
)
# Where browsers send CSP violation reports (empty: none are sent).
csp_report_uri = env("CSP_REPORT_URI", default="")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'", *csp_form_action],
        **({"report-uri": [csp_report_uri]} if csp_report_uri else {}),
    }
}

# --- Database ---------------------------------------------------------------------------------
# PostgreSQL is the only database: production, tests and `make run` (an embedded PostgreSQL from
# a pip wheel under var/postgres, see config/embedded.py; config/settings/local.py points
# DATABASE_URL at it when nothing else is configured).
DATABASE_URL = env("DATABASE_URL", default="")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. This project runs on PostgreSQL only: set "
        "DATABASE_URL=postgres://user:password@host:5432/name, or use `make run`, which starts "
        "an embedded PostgreSQL under var/."
    )
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must point at PostgreSQL (postgres://...): it is the only database this "
        "project supports, in production, in tests and in `make run`."
    )
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache / Redis ----------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="gpucredits"),
            # Fail fast when Redis is away (the limiters then degrade, docs/reliability.md)
            # instead of holding a request on a dead socket.
            "OPTIONS": {
                "socket_connect_timeout": env.float("REDIS_SOCKET_TIMEOUT_S", default=1.0),
                "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT_S", default=1.0),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# The login forms (/login/, /admin/login/) refuse an email after this many failed logins, and a
# client address after this many, counted within LOGIN_FAILURE_WINDOW_S, for LOGIN_LOCKOUT_S
# seconds (HTTP 429 with Retry-After); a successful login clears its account's count.
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
LOGIN_MAX_FAILURES_PER_ACCOUNT = env.int("LOGIN_MAX_FAILURES_PER_ACCOUNT", default=5)
LOGIN_MAX_FAILURES_PER_ADDRESS = env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", default=50)
LOGIN_FAILURE_WINDOW_S = env.int("LOGIN_FAILURE_WINDOW_S", default=900)
LOGIN_LOCKOUT_S = env.int("LOGIN_LOCKOUT_S", default=900)
# Sign-up emails (accounts/signup.py): at most this many to one address per hour (more are
# dropped silently), and sign-up requests from one client address per hour (more: 429).
SIGNUP_EMAILS_PER_RECIPIENT_PER_HOUR = env.int("SIGNUP_EMAILS_PER_RECIPIENT_PER_HOUR", default=3)
SIGNUP_REQUESTS_PER_ADDRESS_PER_HOUR = env.int("SIGNUP_REQUESTS_PER_ADDRESS_PER_HOUR", default=20)
# Proxies in front of the app that append the client's address to X-Forwarded-For (0: the client
# address is the connection's, REMOTE_ADDR). Used for per-address limits such as the login's.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# GET /metrics (docs/operations.md): staff sessions, or `Authorization: Bearer <this>` for the
# Prometheus scraper. Empty: token access is off (staff only).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- I18N / time ------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static -----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Email ------------------------------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="billing@localhost")
if env("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Staff API tokens (`Bearer gpus_…`) first; any other Bearer value is an API key.
        "operations.api.authentication.StaffTokenAuthentication",
        "accounts.api.authentication.APIKeyAuthentication",
        "accounts.api.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.IsOrganizationMember"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.throttling.APIKeyRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exceptions.problem_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Bounded, and refuses NUL, lone surrogates and deep nesting (config/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.StrictJSONParser"],
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Credits API",
    "DESCRIPTION": (
        "Credits, generations and unit economics. Authenticate with "
        "`Authorization: Bearer <api key>`. Errors are RFC 9457 problem details."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Requests per minute for browser-session callers of the API (API keys use their plan's limit).
API_SESSION_RATE_LIMIT_PER_MIN = env.int("API_SESSION_RATE_LIMIT_PER_MIN", default=600)
# How often an API key's last_used_at is written (seconds), so a busy key is not a write per call.
API_KEY_LAST_USED_RESOLUTION_S = env.int("API_KEY_LAST_USED_RESOLUTION_S", default=60)
# How long an API key with its organization and plan is cached (seconds; 0 turns it off).
# Revoking a key or saving a plan, subscription or organization invalidates at once
# (accounts/keycache.py); the TTL only bounds an invalidation lost while Redis was away.
API_KEY_CACHE_S = env.int("API_KEY_CACHE_S", default=30)


# --- Celery -----------------------------------------------------------------------------------
# The broker is Redis (REDIS_URL unless CELERY_BROKER_URL says otherwise); `make run` starts an
# embedded one. A Unix-socket REDIS_URL (unix:///path?db=N) becomes kombu's redis+socket:// form.
def _broker_from_redis(url: str) -> str:
    if url.startswith("unix://"):
        path, _, query = url.removeprefix("unix://").partition("?")
        db = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("db", "0")
        return f"redis+socket://{path}?virtual_host={db}"
    return url


CELERY_BROKER_URL = env(
    "CELERY_BROKER_URL", default=_broker_from_redis(REDIS_URL) or "redis://127.0.0.1:6379/0"
)
# kombu's Redis transport with the fix that keeps a worker consuming after Redis restarts
# (config/celery_transport.py, docs/reliability.md). Plain redis:// only: a `redis+socket://`
# URL names its transport itself (kombu's, unfixed; `make run`'s embedded Redis).
CELERY_BROKER_TRANSPORT = env(
    "CELERY_BROKER_TRANSPORT",
    default=(
        "config.celery_transport:Transport" if CELERY_BROKER_URL.startswith("redis://") else None
    ),
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Must exceed the longest job, or Redis redelivers a task that is still running.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_S", default=3600),
    # Message priorities 0 (first) … 9; paid tiers get lower numbers (generations).
    "priority_steps": list(range(10)),
    "sep": ":",
    # Fair consumption: a worker serving several gpu.<pool> queues BRPOPs every priority step
    # of all of them, steps first (a paid message of any pool before a free one), and within a
    # step starts from the queue it served least lately ("priority" always read the first
    # listed queue first, so one pool starved the others at equal load).
    "queue_order_strategy": env("CELERY_QUEUE_ORDER_STRATEGY", default="round_robin"),
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Seeded into django_celery_beat's tables by the DatabaseScheduler (editable in the admin).
# Each task is idempotent; `expires` drops a run that waited longer than its interval.
CELERY_BEAT_SCHEDULE: dict = {
    "credits-expire-grants": {
        "task": "credits.tasks.expire_grants",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
    "credits-release-stale-holds": {
        "task": "credits.tasks.release_stale_holds",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "credits-renew-subscriptions": {
        "task": "credits.tasks.renew_subscriptions",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Workers keep their database connection across tasks (closed every N tasks) instead of opening
# one per task: twice the worker throughput in bench/dispatch.py.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=100)

# --- Stripe -----------------------------------------------------------------------------------
# See docs/billing.md. Without STRIPE_SECRET_KEY, payments are off (the billing services refuse
# with "billing not configured"); without STRIPE_WEBHOOK_SECRET every webhook is refused (400).
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# Point the client at a Stripe-compatible test server (localstripe); empty: api.stripe.com.
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
# Servers that implement only the legacy Plans API (localstripe): recurring prices as plans.
STRIPE_LEGACY_PLANS = env.bool("STRIPE_LEGACY_PLANS", default=False)
STRIPE_CURRENCY = env("STRIPE_CURRENCY", default="usd")
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
STRIPE_TIMEOUT_S = env.float("STRIPE_TIMEOUT_S", default=30)
# A signed webhook older than this (seconds) is refused (replay protection); 0 disables.
STRIPE_WEBHOOK_TOLERANCE_S = env.int("STRIPE_WEBHOOK_TOLERANCE_S", default=300)
# Where Checkout and the Customer Portal send the customer back ({CHECKOUT_SESSION_ID} is
# filled in by Stripe).
STRIPE_CHECKOUT_SUCCESS_URL = env(
    "STRIPE_CHECKOUT_SUCCESS_URL",
    default=SITE_URL.rstrip("/") + "/billing/?checkout=success&session_id={CHECKOUT_SESSION_ID}",
)
STRIPE_CHECKOUT_CANCEL_URL = env(
    "STRIPE_CHECKOUT_CANCEL_URL", default=SITE_URL.rstrip("/") + "/billing/?checkout=canceled"
)
STRIPE_PORTAL_RETURN_URL = env(
    "STRIPE_PORTAL_RETURN_URL", default=SITE_URL.rstrip("/") + "/billing/"
)
# A subscription whose payment failed stays on its plan (past due, banner in the UI) this many
# days, then falls back to the free plan.
BILLING_PAST_DUE_GRACE_DAYS = env.int("BILLING_PAST_DUE_GRACE_DAYS", default=7)
# Referrals (credits.trials.referrals): credits to each side, and paid referrals per referrer
# per calendar month (past it a sign-up still succeeds, without referral credits).
REFERRAL_CREDITS = env.int("REFERRAL_CREDITS", default=100)
REFERRALS_PER_MONTH = env.int("REFERRALS_PER_MONTH", default=10)
# Overage invoices of customers without a saved card are emailed by Stripe, due in N days.
BILLING_OVERAGE_DAYS_UNTIL_DUE = env.int("BILLING_OVERAGE_DAYS_UNTIL_DUE", default=14)
# Purchased credits never expire unless this is > 0 (days after the purchase).
BILLING_PACK_CREDITS_EXPIRE_DAYS = env.int("BILLING_PACK_CREDITS_EXPIRE_DAYS", default=0)
# Failed webhook events are processed again by a beat task, with backoff, this many times
# within this many hours (Stripe retries for 3 days too); staff may reprocess any in the admin.
BILLING_EVENT_RETRY_MAX_ATTEMPTS = env.int("BILLING_EVENT_RETRY_MAX_ATTEMPTS", default=12)
BILLING_EVENT_RETRY_MAX_AGE_H = env.int("BILLING_EVENT_RETRY_MAX_AGE_H", default=72)
# An auto top-up whose charge could not be sent (Stripe unreachable) is retried with the same
# idempotency key for this long, then given up (Stripe keeps keys for 24 h).
BILLING_AUTO_TOP_UP_RETRY_H = env.int("BILLING_AUTO_TOP_UP_RETRY_H", default=20)
CELERY_BEAT_SCHEDULE.update(
    {
        "billing-retry-failed-events": {
            "task": "credits.tasks.billing_retry_failed_events",
            "schedule": 120.0,
            "options": {"expires": 110},
        },
        "billing-invoice-overages": {
            "task": "credits.tasks.billing_invoice_overages",
            "schedule": 600.0,
            "options": {"expires": 590},
        },
        "billing-balance-watch": {
            "task": "credits.tasks.billing_balance_watch",
            "schedule": 60.0,
            "options": {"expires": 55},
        },
        "credits-velocity-watch": {
            "task": "credits.tasks.credits_velocity_watch",
            "schedule": 60.0,
            "options": {"expires": 55},
        },
        "credits-trials-end-due": {
            "task": "credits.tasks.credits_trials_end_due",
            "schedule": 300.0,
            "options": {"expires": 290},
        },
        "billing-downgrade-past-due": {
            "task": "credits.tasks.billing_downgrade_past_due",
            "schedule": 3600.0,
            "options": {"expires": 3500},
        },
        "billing-prune-webhook-refusals": {
            "task": "credits.tasks.billing_prune_webhook_refusals",
            "schedule": 3600.0,
            "options": {"expires": 3500},
        },
    }
)

# --- Logs and traces (config/logs.py, config/tracing.py; docs/operations.md) -----------------
# One line per record on stderr, with request_id, organization, job_id and task_id where known:
# LOG_FORMAT=json (one JSON object a line; production's default) or text (dev and tests).
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="text")
LOGGING = logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)
# OpenTelemetry tracing (the `[otel]` extra) of requests, tasks and queries; OTEL_* as usual.
OTEL_ENABLED = env.bool("OTEL_ENABLED", default=False)

# --- Credits ----------------------------------------------------------------------------------
# A hold not captured or released within this time is released by the stale-holds beat task.
CREDITS_HOLD_TIMEOUT_S = env.int("CREDITS_HOLD_TIMEOUT_S", default=2 * 3600)
# Prepare the ledger's hot statements on each PostgreSQL connection (off behind a PgBouncer in
# transaction mode older than 1.21, which can't keep prepared statements).
CREDITS_PREPARED_STATEMENTS = env.bool("CREDITS_PREPARED_STATEMENTS", default=True)

# --- Generations ------------------------------------------------------------------------------
# Simulated backend: multiply service times (0 = instant; tests and benchmarks use 0).
GENERATIONS_SIMULATED_SPEEDUP = env.float("GENERATIONS_SIMULATED_SPEEDUP", default=1.0)
GENERATIONS_SIMULATED_NODES = env.int("GENERATIONS_SIMULATED_NODES", default=2)
# ComfyUI backend: nodes per pool, as JSON {"a100": {"a100-node-1": "http://127.0.0.1:8188"}}.
GENERATIONS_COMFYUI_NODES = env.json("GENERATIONS_COMFYUI_NODES", default={})
# Each HTTP call to a node: tries (transient errors — connection, timeout, 429, 5xx — are retried
# with exponential backoff from BACKOFF_S, with jitter), connect/read timeouts, and the timeout
# of the GET /queue probe that picks the least-loaded node. A model's backend_config overrides.
GENERATIONS_COMFYUI_MAX_ATTEMPTS = env.int("GENERATIONS_COMFYUI_MAX_ATTEMPTS", default=5)
GENERATIONS_COMFYUI_BACKOFF_S = env.float("GENERATIONS_COMFYUI_BACKOFF_S", default=0.25)
GENERATIONS_COMFYUI_CONNECT_TIMEOUT_S = env.float(
    "GENERATIONS_COMFYUI_CONNECT_TIMEOUT_S", default=3
)
GENERATIONS_COMFYUI_READ_TIMEOUT_S = env.float("GENERATIONS_COMFYUI_READ_TIMEOUT_S", default=10)
GENERATIONS_COMFYUI_PROBE_TIMEOUT_S = env.float("GENERATIONS_COMFYUI_PROBE_TIMEOUT_S", default=0.5)
# A free-tier submission is refused with server_busy when its pool has this many queued jobs.
GENERATIONS_FREE_TIER_MAX_QUEUED = env.int("GENERATIONS_FREE_TIER_MAX_QUEUED", default=50)
GENERATIONS_SERVER_BUSY_RETRY_AFTER_S = env.int("GENERATIONS_SERVER_BUSY_RETRY_AFTER_S", default=30)
# Identical requests (same organization, model and params) within this time reuse the result.
GENERATIONS_RESULT_CACHE_TTL_S = env.int("GENERATIONS_RESULT_CACHE_TTL_S", default=0)
# The reaper re-enqueues jobs queued longer than this that no worker picked up.
GENERATIONS_REQUEUE_AFTER_S = env.int("GENERATIONS_REQUEUE_AFTER_S", default=120)
# ...but only those whose message is gone from the broker (its lists and unacked messages are
# read, at most SCAN_MAX messages), at most REPUBLISH_MAX per run, looking at no more than
# CHECK_MAX long-queued jobs; a job whose publish failed is published again GRACE_S after it
# was accepted (the reaper's next run). See docs/reliability.md.
GENERATIONS_REAPER_REPUBLISH_MAX = env.int("GENERATIONS_REAPER_REPUBLISH_MAX", default=200)
GENERATIONS_REAPER_CHECK_MAX = env.int("GENERATIONS_REAPER_CHECK_MAX", default=10000)
GENERATIONS_REAPER_SCAN_MAX = env.int("GENERATIONS_REAPER_SCAN_MAX", default=100000)
GENERATIONS_REPUBLISH_GRACE_S = env.int("GENERATIONS_REPUBLISH_GRACE_S", default=5)
GENERATIONS_MAX_ATTEMPTS = env.int("GENERATIONS_MAX_ATTEMPTS", default=3)
# A running job's lease, renewed by its worker every third of it; a lapsed lease means the
# worker is gone: the reaper (or a redelivery) requeues the job for another attempt with the
# same hold, and fails and releases it after GENERATIONS_MAX_ATTEMPTS attempts.
GENERATIONS_LEASE_S = env.int("GENERATIONS_LEASE_S", default=30)
# A job's terminal transaction that fails on connection loss is retried on a fresh connection
# (this many tries in all, backoff doubling from GENERATIONS_FINISH_BACKOFF_S); a result still
# not recorded is kept in GENERATIONS_SPOOL_DIR (one JSON file per job attempt) and recorded by
# the worker's next task or the reaper (docs/reliability.md, "Finishing completed work").
GENERATIONS_FINISH_TRIES = env.int("GENERATIONS_FINISH_TRIES", default=5)
GENERATIONS_FINISH_BACKOFF_S = env.float("GENERATIONS_FINISH_BACKOFF_S", default=0.25)
GENERATIONS_SPOOL_DIR = Path(env.str("GENERATIONS_SPOOL_DIR", default=str(VAR_DIR / "spool")))
# Pools whose queues (gpu.<pool>) every worker consumes by default, besides those in the DB.
GENERATIONS_POOLS = env.list("GENERATIONS_POOLS", default=["a100", "l4"])
# One queue per node pool; `celery -A config worker` with no -Q consumes them all (and the
# queues of pools created later in the database, see config/celery_app.py).
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue("celery")] + [Queue(f"gpu.{pool}") for pool in GENERATIONS_POOLS]
# The unit-cost report's per-hour aggregates of hours dirtied by live runs (infra_costs.tasks).
COST_AGGREGATES_REFRESH_S = env.float("COST_AGGREGATES_REFRESH_S", default=300.0)
CELERY_BEAT_SCHEDULE["infra-costs-refresh-aggregates"] = {
    "task": "infra_costs.tasks.refresh_cost_aggregates",
    "schedule": COST_AGGREGATES_REFRESH_S,
    "options": {"expires": max(1.0, COST_AGGREGATES_REFRESH_S - 10)},
}
CELERY_BEAT_SCHEDULE["generations-reap"] = {
    "task": "generations.tasks.reap_jobs",
    "schedule": 30.0,
    "options": {"expires": 25},
}
# Alert rules (operations.alerts): measured every minute; emails to staff on open/escalation.
CELERY_BEAT_SCHEDULE["operations-evaluate-alerts"] = {
    "task": "operations.tasks.evaluate_alerts",
    "schedule": 60.0,
    "options": {"expires": 55},
}
# The GPU fleet (infra_costs.fleet, operations.fleet): every FLEET_TICK_S the tick completes
# provider operations, takes one autoscaling decision per pool with an enabled AutoscalePolicy
# and dispatches waiting jobs to free node slots. Pools without a policy are not managed.
FLEET_TICK_S = env.float("FLEET_TICK_S", default=10.0)
CELERY_BEAT_SCHEDULE["operations-fleet-tick"] = {
    "task": "operations.tasks.fleet_tick",
    "schedule": FLEET_TICK_S,
    "options": {"expires": max(1.0, FLEET_TICK_S - 1)},
}
# Outbound webhooks (accounts.webhooks, docs/webhooks.md). Receivers' URLs must be https and
# public addresses (no loopback/private/link-local) unless these say otherwise (local, tests).
WEBHOOKS_REQUIRE_HTTPS = env.bool("WEBHOOKS_REQUIRE_HTTPS", default=True)
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
WEBHOOKS_TIMEOUT_S = env.float("WEBHOOKS_TIMEOUT_S", default=10.0)
WEBHOOKS_CLAIM_LEASE_S = env.int("WEBHOOKS_CLAIM_LEASE_S", default=60)
# Failed deliveries: retried after base·2^(n-1) seconds (capped) for up to the window.
WEBHOOKS_RETRY_BASE_S = env.int("WEBHOOKS_RETRY_BASE_S", default=60)
WEBHOOKS_RETRY_MAX_DELAY_S = env.int("WEBHOOKS_RETRY_MAX_DELAY_S", default=6 * 3600)
WEBHOOKS_RETRY_WINDOW_H = env.int("WEBHOOKS_RETRY_WINDOW_H", default=72)
# An endpoint failing this many attempts in a row, for longer than this, is disabled (+ email).
WEBHOOKS_DISABLE_AFTER_FAILURES = env.int("WEBHOOKS_DISABLE_AFTER_FAILURES", default=20)
WEBHOOKS_DISABLE_AFTER_H = env.int("WEBHOOKS_DISABLE_AFTER_H", default=24)
# After a rotation the previous secret still signs (a second v1=) for this long.
WEBHOOKS_PREVIOUS_SECRET_H = env.int("WEBHOOKS_PREVIOUS_SECRET_H", default=24)
CELERY_BEAT_SCHEDULE["accounts-webhook-sweep"] = {
    "task": "accounts.tasks.webhook_sweep",
    "schedule": 60.0,
    "options": {"expires": 55},
}
