"""A worker process loads the URLconf when it starts (config/celery_app.py, issue 16), not in
its first task: the simulated backend's result URL (`reverse`) made that task ~0.5 s slower."""

from __future__ import annotations

import importlib

from celery import signals
from django.urls import clear_url_caches, get_resolver

celery_app = importlib.import_module("config.celery_app")  # the module (config.celery_app: the app)


def test_the_urlconf_is_loaded_at_worker_process_start():
    # Connected with weak=False: the function itself is the receiver.
    assert celery_app._urls_load in [r for _, r in signals.worker_process_init.receivers]
    clear_url_caches()  # a fresh resolver, as in a new process
    celery_app._urls_load()
    assert get_resolver()._populated
