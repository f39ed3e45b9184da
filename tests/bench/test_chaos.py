"""bench/chaos.py: its fault schedule replays from the seed, and a tiny run against real servers
(its own Redis, gunicorn, a Celery worker, beat) with a gunicorn worker killed and every
PostgreSQL backend terminated settles with the money exact."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench import chaos

ROOT = Path(__file__).resolve().parents[2]


def test_the_same_seed_gives_the_same_fault_schedule_with_every_fault_in_each_round():
    a = chaos.fault_schedule(5, 240, list(chaos.FAULTS))
    b = chaos.fault_schedule(5, 240, list(chaos.FAULTS))
    other = chaos.fault_schedule(6, 240, list(chaos.FAULTS))

    assert a == b
    assert a != other
    assert sorted(f.kind for f in a) == sorted(list(chaos.FAULTS) * 2)  # two rounds of 120 s
    assert all(0.1 * 240 <= f.at <= 0.85 * 240 for f in a)
    assert [f.at for f in a] == sorted(f.at for f in a)
    assert all(10 <= f.duration <= 20 for f in a if f.kind == "redis")
    assert all(f.duration == 0 for f in a if f.kind != "redis")


def test_a_request_is_counted_in_the_window_of_the_fault_it_followed():
    faults = [chaos.Fault(10.0, "redis", 12.0, 0), chaos.Fault(40.0, "postgres", 0.0, 0)]

    assert chaos.window_of(5.0, faults) == "none"
    assert chaos.window_of(10.0, faults) == "redis"
    assert chaos.window_of(31.9, faults) == "redis"  # 10 s after Redis came back
    assert chaos.window_of(32.0, faults) == "none"
    assert chaos.window_of(45.0, faults) == "postgres"


def test_no_faults_and_unknown_faults_are_told_apart_by_the_arguments():
    assert chaos.parse_args(["--seed", "1", "--faults", "none"]).fault_kinds == []
    assert chaos.parse_args(["--seed", "1"]).fault_kinds == list(chaos.FAULTS)
    with pytest.raises(SystemExit):
        chaos.parse_args(["--seed", "1", "--faults", "meteor"])


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_a_tiny_run_with_a_gunicorn_worker_and_the_database_connections_killed_is_exact():
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/x"
    parts = urlsplit(base)
    url = urlunsplit((parts.scheme, parts.netloc, "/gpucredits_bench_chaos_smoke", "", ""))
    cmd = [
        sys.executable, "bench/chaos.py", "--seed", "7", "--seconds", "8", "--rate", "3",
        "--workers", "1", "--faults", "gunicorn,postgres", "--database-url", url,
        "--redis-port", "6393", "--settle-timeout", "120",
    ]  # fmt: skip

    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)

    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Money EXACT" in out
    summary = dict(re.findall(r"(\w+) (\d+)", next(ln for ln in out.splitlines()
                                                   if ln.startswith("summary:"))))  # fmt: skip
    assert int(summary["submissions"]) > 0
    assert summary["jobs"] == summary["succeeded"]
    assert summary["non503_5xx"] == "0"
    assert summary["money_exact"] == "1"
    assert "SIGKILL gunicorn worker" in out
    assert "pg_terminate_backend" in out
