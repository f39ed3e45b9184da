"""The worker hook of generations/celery_hooks.py: a worker started without -Q consumes the
gpu.<pool> queue of every node pool in the database (pools created after the settings too)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from celery.signals import celeryd_after_setup

from generations.celery_hooks import consume_every_pool_queue
from tests.factories import make_pool

pytestmark = pytest.mark.django_db


class FakeQueues:
    def __init__(self):
        self.added: list[str] = []

    def select_add(self, name: str) -> None:
        self.added.append(name)


def fake_worker():
    queues = FakeQueues()
    return SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=queues))), queues


def test_the_hook_is_connected_when_django_starts():
    receivers = [r() for _key, r in celeryd_after_setup.receivers]
    assert consume_every_pool_queue in receivers


def test_worker_without_q_consumes_every_pool_queue(monkeypatch):
    make_pool("a100")
    make_pool("h100-new", gpu_type="H100")
    monkeypatch.setattr(sys, "argv", ["celery", "-A", "config", "worker"])
    worker, queues = fake_worker()

    consume_every_pool_queue(sender="w@host", instance=worker)

    assert {"gpu.a100", "gpu.h100-new"} <= set(queues.added)


@pytest.mark.parametrize("flag", [["-Q", "celery"], ["-Qcelery"], ["--queues=celery"]])
def test_worker_with_explicit_queues_is_left_alone(monkeypatch, flag):
    make_pool("a100")
    monkeypatch.setattr(sys, "argv", ["celery", "-A", "config", "worker", *flag])
    worker, queues = fake_worker()

    consume_every_pool_queue(sender="w@host", instance=worker)

    assert queues.added == []
