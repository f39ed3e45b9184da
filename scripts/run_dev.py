#!/usr/bin/env python
"""Run the project locally (what `make run` runs).

Starts the embedded PostgreSQL (var/postgres/) and Redis (var/redis/) unless DATABASE_URL /
REDIS_URL point elsewhere (config/embedded.py), migrates the database, seeds the demo without
its GPU history (`seed_demo --no-history`), then runs the web server, a Celery worker and Celery
beat as child processes, their output prefixed with "web |", "worker |" and "beat |"; once the
server answers, a "seed |" child generates the demo history (`seed_demo --history-only`: ~400k
GPU runs, several seconds; nothing when it is already there) while the staff pages show a banner.
Each step is printed with its duration, the URLs, logins and API key at the end. Settings are
config.settings.local. The embedded servers are owned by this process: they stop after the
children when it stops.
PORT (default 8000) sets the web server's port. Ctrl-C or SIGTERM stops everything.

GPU_NODES=1 also starts one simulated ComfyUI GPU node per pool (`manage.py run_gpu_node`:
a100 on 127.0.0.1:8188, l4 on 127.0.0.1:8189; output prefixed "gpu-a100 |", "gpu-l4 |") and
points GENERATIONS_COMFYUI_NODES at them for every process (replacing any value of it), so
models with the `comfyui` backend run over real HTTP. Without it nothing changes. The command
comes from the `devtools` app, which the local settings (used here) install and production's
do not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from config.embedded import EmbeddedError, postgres_start, redis_start  # noqa: E402

PY = sys.executable
STOP_GRACE_S = 10  # SIGTERM first, SIGKILL after this many seconds
# GPU_NODES=1: the simulated GPU nodes started, per pool: (node name, port).
GPU_NODES = {"a100": ("a100-node-1", 8188), "l4": ("l4-node-1", 8189)}

_print_lock = threading.Lock()
_stop_requested = threading.Event()


def out(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def say(msg: str) -> None:
    out(f"run_dev: {msg}")


class Child:
    COLORS = {"web": "32", "worker": "36", "beat": "35", "gpu-a100": "33", "gpu-l4": "33"}
    WIDTH = 6  # label width; widened when longer names (the GPU nodes) run

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
        label = f"{name:<{self.WIDTH}}|"
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


def gpu_nodes_wanted(env: dict) -> bool:
    return env.get("GPU_NODES", "").strip().lower() in {"1", "true", "yes", "on"}


def gpu_node_commands(env: dict) -> dict[str, list[str]]:
    """GPU_NODES=1: a `run_gpu_node` child per pool, and GENERATIONS_COMFYUI_NODES in `env`
    (for every child) pointing at them."""
    nodes = {pool: {name: f"http://127.0.0.1:{port}"} for pool, (name, port) in GPU_NODES.items()}
    env["GENERATIONS_COMFYUI_NODES"] = json.dumps(nodes)
    commands = {}
    for pool, (name, port) in GPU_NODES.items():
        args = ["run_gpu_node", "--pool", pool, "--port", str(port), "--name", name]
        commands[f"gpu-{pool}"] = [PY, "manage.py", *args]
    return commands


def manage_with_services(args: list[str]) -> int:
    """`make manage ARGS="..."`: a manage.py command on the embedded servers (joining the ones
    a running `make run` owns, or starting them for the command's lifetime)."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    try:
        services = embedded_services_start(env, quiet=True)
    except EmbeddedError as exc:
        say(f"setup failed: {exc}")
        return 1
    try:
        return manage(*args, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        for service in reversed(services):
            service.stop()


def main() -> int:
    if sys.argv[1:2] == ["manage"]:
        return manage_with_services(sys.argv[2:])
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    env["PYTHONUNBUFFERED"] = "1"
    port = int(env.get("PORT", "8000"))
    env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    gpu: dict[str, list[str]] = {}
    gpu_lines = ""
    if gpu_nodes_wanted(env):
        gpu = gpu_node_commands(env)  # sets GENERATIONS_COMFYUI_NODES for every process
        say(f"GPU_NODES=1: GENERATIONS_COMFYUI_NODES={env['GENERATIONS_COMFYUI_NODES']}")
        gpu_lines = "".join(
            f"    GPU node {name} ({pool}) http://127.0.0.1:{node_port}/\n"
            for pool, (name, node_port) in GPU_NODES.items()
        )

    (BASE_DIR / "var" / "staticfiles").mkdir(parents=True, exist_ok=True)  # STATIC_ROOT

    services: list = []
    try:
        services = embedded_services_start(env)
    except EmbeddedError as exc:
        say(f"setup failed: {exc}")
        return 1
    try:
        return serve(env, port, gpu, gpu_lines)
    finally:
        for service in reversed(services):
            service.stop()
        if services:
            say("stopped the embedded " + " and ".join(s.NAME for s in services))


def embedded_services_start(
    env: dict, var_dir: Path = BASE_DIR / "var", *, quiet: bool = False
) -> list:
    """Start the embedded PostgreSQL / Redis (under `var_dir`) for whatever DATABASE_URL /
    REDIS_URL leave unset (a .env file counts as set); put their URLs in `env` for every child."""
    started: list = []
    dotenv = dotenv_values()
    if not (env.get("DATABASE_URL") or dotenv.get("DATABASE_URL")):
        t0 = time.monotonic()
        pg = postgres_start(var_dir / "postgres")
        started.append(pg)
        env["DATABASE_URL"] = pg.url()
        if not quiet:
            say(f"embedded PostgreSQL ready in {time.monotonic() - t0:.1f}s (var/postgres/)")
    if not (env.get("REDIS_URL") or dotenv.get("REDIS_URL") or env.get("CELERY_BROKER_URL")):
        t0 = time.monotonic()
        try:
            rd = redis_start(var_dir / "redis")
        except EmbeddedError:
            for service in started:
                service.stop()
            raise
        started.append(rd)
        env["REDIS_URL"] = rd.url()
        if not quiet:
            say(f"embedded Redis ready in {time.monotonic() - t0:.1f}s (var/redis/)")
    return started


def dotenv_values() -> dict:
    path = BASE_DIR / ".env"
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip().removeprefix("export ").strip()] = value.strip()
    return values


def seed_without_history(env: dict) -> str:
    """`seed_demo --no-history`, its output shown now and returned (the logins and the API key,
    repeated when the server is up)."""
    r = subprocess.run(
        [PY, "manage.py", "seed_demo", "--no-history"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    print(r.stdout, end="", flush=True)
    if r.returncode:
        raise subprocess.CalledProcessError(r.returncode, r.args)
    lines = r.stdout.strip("\n").splitlines()
    return "\n".join(line for line in lines if line.strip() != "Demo data is ready.")


def timed(label: str, fn, *args, **kwargs):
    """Say `label`, run fn, say how long it took."""
    say(f"{label}…")
    t0 = time.monotonic()
    result = fn(*args, **kwargs)
    say(f"{label}: done in {time.monotonic() - t0:.1f}s")
    return result


def serve(env: dict, port: int, gpu: dict, gpu_lines: str) -> int:
    try:
        timed("applying migrations", manage, "migrate", "--noinput", env=env)
        # The server answers once the schema and the catalog exist: the GPU history (~400k runs)
        # is generated after it starts, by the "seed" child below.
        demo = timed("seeding the demo accounts and catalog", seed_without_history, env)
        broker = broker_url(env)
    except subprocess.CalledProcessError as exc:
        say(f"setup failed: {' '.join(exc.cmd[1:])} exited with {exc.returncode}")
        return 1
    except KeyboardInterrupt:
        return 130

    worker_args = [PY, "-m", "celery", "-A", "config", "worker", "-l", "info"]
    commands = {
        "web": [PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": worker_args,
        "beat": [PY, "-m", "celery", "-A", "config", "beat", "-l", "info"],
    }
    if gpu:
        commands = {**gpu, **commands}  # the nodes first: up before the worker needs them
        Child.WIDTH = max(len(name) for name in commands)

    def request_stop(signum, frame):
        if _stop_requested.is_set():
            return
        _stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children: list[Child] = []
    seeder: Child | None = None  # the background history; it exits when done
    exit_code = 0
    try:
        t0 = time.monotonic()
        for name, args in commands.items():
            children.append(Child(name, args, env))
        if wait_for_port(port, children):
            say(f"web server answering in {time.monotonic() - t0:.1f}s")
            seeder = Child("seed", [PY, "manage.py", "seed_demo", "--history-only"], env)
            url = f"http://127.0.0.1:{port}"
            bar = "=" * 64
            out(
                f"\n{bar}\n  GPU Credits is running (broker: {broker.split('://')[0]}://)\n"
                f"    Web UI   {url}/\n    Staff    {url}/staff/\n    Admin    {url}/admin/\n"
                f"    API docs {url}/api/docs/\n"
                f"{gpu_lines}"
                f"{demo}\n\n"
                f"  The demo GPU history is generated in the background ('seed |' lines) if it\n"
                f"  isn't there yet; the staff pages say so until it is complete.\n"
                f"  Press Ctrl-C to stop the web server, worker and beat"
                f"{' and the GPU nodes' if gpu_lines else ''}.\n{bar}\n"
            )
        while not _stop_requested.is_set():
            if seeder is not None and not seeder.alive():
                seeder.reader.join(timeout=2)
                if seeder.proc.returncode != 0:
                    say(f"the demo history failed (exit code {seeder.proc.returncode})")
                seeder = None
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
        stop_all([seeder, *children] if seeder is not None else children)
    say("stopped")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
