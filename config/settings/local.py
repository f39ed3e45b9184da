"""Local development (`make run`): DEBUG on by default; the embedded PostgreSQL and Redis that
`make run` starts under var/ (config/embedded.py) unless DATABASE_URL / REDIS_URL say otherwise.
`make run` sets both for the processes it starts; these defaults let a `manage.py` command run
beside it find the same servers (`make manage ARGS=...` starts them when it isn't running)."""

import os
from pathlib import Path

import environ

from config.embedded import database_url, redis_url

_BASE = Path(__file__).resolve().parent.parent.parent
_VAR = _BASE / "var"
environ.Env.read_env(_BASE / ".env", overwrite=False)  # a .env file wins over the defaults
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DATABASE_URL", database_url(_VAR / "postgres"))
os.environ.setdefault("REDIS_URL", redis_url(_VAR / "redis" / "redis.sock"))

from config.settings.base import *  # noqa: E402, F403

# Dev/test tools (the simulated ComfyUI GPU node, `manage.py run_gpu_node`): never in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]  # noqa: F405
# Webhook receivers on this machine (http://127.0.0.1:…) are fine in development.
WEBHOOKS_REQUIRE_HTTPS = env.bool("WEBHOOKS_REQUIRE_HTTPS", default=False)  # noqa: F405
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=True)  # noqa: F405
