"""The Celery application. Settings come from Django's settings, prefixed CELERY_.

Plumbing only: the apps connect their own worker hooks in their AppConfig.ready() (e.g. the
gpu.<pool> queues of pools created after the settings: `generations.celery_hooks`)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
