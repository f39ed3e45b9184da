#!/usr/bin/env python
"""Run the project locally (what `make run` runs).

Migrates the database, seeds the demo, then runs the web server, a Celery worker and Celery beat
as child processes, their output prefixed with "web |", "worker |" and "beat |".
Settings are config.settings.local: SQLite under var/ and kombu's filesystem broker under
var/broker/ unless DATABASE_URL / REDIS_URL (or CELERY_BROKER_URL) say otherwise.
PORT (default 8000) sets the web server's port. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
STOP_GRACE_S = 10  # SIGTERM first, SIGKILL after this many seconds

_print_lock = threading.Lock()
_stop_requested = threading.Event()


def out(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def say(msg: str) -> None:
    out(f"run_dev: {msg}")


class Child:
    COLORS = {"web": "32", "worker": "36", "beat": "35"}

    def __init__(self, name: str, args: list[str], env: dict) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            args,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            # Its own process group: Ctrl-C reaches only us, and we stop the whole group.
            start_new_session=True,
        )
        label = f"{name:<6}|"
        if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
            label = f"\033[{self.COLORS.get(name, '0')}m{label}\033[0m"
        self.label = label
        self.reader = threading.Thread(target=self._pump, name=f"{name}-output", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            out(f"{self.label} {line.rstrip()}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def alive(self) -> bool:
        return self.proc.poll() is None


def stop_all(children: list[Child]) -> None:
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(c.alive() for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        if child.alive():
            say(f"{child.name} did not stop within {STOP_GRACE_S}s; killing it")
        # Kill whatever is left of each group (e.g. pool processes of a dead worker).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
        child.reader.join(timeout=2)


def manage(*args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "manage.py", *args], cwd=BASE_DIR, env=env, check=check)


def has_command(name: str, env: dict) -> bool:
    r = subprocess.run(
        [PY, "manage.py", "help", "--commands"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    return name in r.stdout.split()


def broker_url(env: dict) -> str:
    """The broker the settings resolve to (they read the environment and .env)."""
    r = subprocess.run(
        [PY, "-c", "from django.conf import settings; print(settings.CELERY_BROKER_URL)"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.strip().splitlines()[-1]


def wait_for_port(port: int, children: list[Child], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _stop_requested.is_set():
        if not all(c.alive() for c in children):
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def main() -> int:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    env["PYTHONUNBUFFERED"] = "1"
    port = int(env.get("PORT", "8000"))
    env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")

    # The filesystem broker's folders, and STATIC_ROOT (whitenoise warns when it is missing).
    for d in ("var/broker/out", "var/broker/processed", "var/staticfiles"):
        (BASE_DIR / d).mkdir(parents=True, exist_ok=True)

    try:
        say("applying migrations")
        manage("migrate", "--noinput", env=env)
        if has_command("seed_demo", env):
            say("seeding the demo data")
            manage("seed_demo", env=env)
        else:
            say("WARNING: no seed_demo command yet; skipping the demo data")
        broker = broker_url(env)
    except subprocess.CalledProcessError as exc:
        say(f"setup failed: {' '.join(exc.cmd[1:])} exited with {exc.returncode}")
        return 1
    except KeyboardInterrupt:
        return 130

    worker_args = [PY, "-m", "celery", "-A", "config", "worker", "-l", "info"]
    if broker.startswith("filesystem://"):
        # The filesystem transport only polls: a thread pool shares one connection and works.
        worker_args += ["--pool=threads", "--concurrency=4"]
    commands = {
        "web": [PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": worker_args,
        "beat": [PY, "-m", "celery", "-A", "config", "beat", "-l", "info"],
    }

    def request_stop(signum, frame):
        if _stop_requested.is_set():
            return
        _stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children: list[Child] = []
    exit_code = 0
    try:
        for name, args in commands.items():
            children.append(Child(name, args, env))
        if wait_for_port(port, children):
            url = f"http://127.0.0.1:{port}"
            bar = "=" * 64
            out(
                f"\n{bar}\n  GPU Credits is running (broker: {broker.split('://')[0]}://)\n"
                f"    Web UI   {url}/\n    Admin    {url}/admin/\n    API docs {url}/api/docs/\n"
                f"  Press Ctrl-C to stop the web server, worker and beat.\n{bar}\n"
            )
        while not _stop_requested.is_set():
            dead = [c for c in children if not c.alive()]
            if dead:
                for c in dead:
                    say(f"{c.name} exited unexpectedly (exit code {c.proc.returncode})")
                exit_code = 1
                break
            time.sleep(0.2)
        if _stop_requested.is_set() and exit_code == 0:
            say("stopping (Ctrl-C / SIGTERM)")
        else:
            say("stopping the other processes")
    finally:
        stop_all(children)
    say("stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
