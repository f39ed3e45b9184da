"""Local development (`make run`): DEBUG on by default, SQLite and an embedded broker unless
DATABASE_URL / REDIS_URL say otherwise."""

import os

os.environ.setdefault("DEBUG", "true")

from config.settings.base import *  # noqa: F403
