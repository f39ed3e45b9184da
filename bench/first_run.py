#!/usr/bin/env python3
"""Time `make run` as a new user meets it (issue 17): from a fresh clone to the first 200 on
/login/, then to the first 200 on /staff/costs/ without the "history is being generated" banner
(logged in as the staff demo user), then a second `make run` on the same checkout to the first
200 on /login/. Prints the figures and PASS/MISS against the targets (first page ≤ 60 s, second
start ≤ 10 s).

    python3 bench/first_run.py                # package caches as they are (warm, usually)
    python3 bench/first_run.py --no-cache     # PIP_NO_CACHE_DIR=1 and UV_NO_CACHE=1: a cold cache
    python3 bench/first_run.py --pip          # INSTALLER=pip: pip instead of uv
    python3 bench/first_run.py --keep         # keep the clone (printed) for a look

The "fresh clone" is the working tree as it is (tracked and untracked, not ignored, files:
`git ls-files -co --exclude-standard`) copied into a temporary directory and `git init`-ed, so
uncommitted work is measured too; no .venv, no var/, no .env. DATABASE_URL / REDIS_URL are
removed from the environment so `make run` starts its embedded PostgreSQL and Redis. Every
process a run starts is stopped (SIGINT to `make run`'s process group, as Ctrl-C; then
whatever still runs from the clone is killed by pid).
"""

from __future__ import annotations

import argparse
import contextlib
import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PAGE_TARGET_S = 60.0
SECOND_START_TARGET_S = 10.0
STAFF_EMAIL = "admin@example.com"
BANNER = "demo-history-pending"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_clone(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, files):
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


class MakeRun:
    """`make run` in `checkout`, its output in `log` (and echoed with a prefix)."""

    def __init__(self, checkout: Path, env: dict, log: Path, label: str) -> None:
        self.log = log.open("w")
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["make", "run"],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own group: stopped as a whole, like Ctrl-C
        )
        self.label = label
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.log.write(line)
            self.log.flush()
            if os.environ.get("BENCH_VERBOSE") or re.match(
                r"(run_dev:|install:|seed +\||Creating)", line
            ):
                print(f"  [{self.label}] {line.rstrip()}", flush=True)

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=5)
        self.log.close()


def leftovers(checkout: Path) -> list[int]:
    """Pids of processes still running from the clone (embedded servers, children)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(checkout) in cmd:
            pids.append(int(proc.name))
    return pids


def kill_leftovers(checkout: Path) -> None:
    deadline = time.monotonic() + 10
    while leftovers(checkout) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in leftovers(checkout):
        print(f"  killing leftover pid {pid}", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def get(opener, url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, ""


def wait_for_200(opener, url: str, run: MakeRun, t0: float, deadline_s: float) -> float | None:
    """Seconds since t0 to the first 200 on url (None: never, or make run died)."""
    while time.monotonic() - t0 < deadline_s:
        if run.proc.poll() is not None:
            return None
        status, _ = get(opener, url, timeout=5)
        if status == 200:
            return time.monotonic() - t0
        time.sleep(0.2)
    return None


def staff_opener(base: str, password: str):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    _, body = get(opener, f"{base}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1) if token else "",
            "username": STAFF_EMAIL,
            "password": password,
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/login/", data=data, headers={"Referer": f"{base}/login/"}
    )
    opener.open(request, timeout=20).read()
    return opener


def verdict(value: float | None, target: float) -> str:
    return "PASS" if value is not None and value <= target else "MISS"


def fmt(value: float | None) -> str:
    return f"{value:6.1f} s" if value is not None else "  never"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cache", action="store_true", help="cold package caches")
    parser.add_argument("--pip", action="store_true", help="INSTALLER=pip: install with pip")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (s)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gpuc-first-run-"))
    checkout = tmp / "gpu-credits"
    checkout.mkdir()
    fresh_clone(checkout)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(PORT=str(port), NO_COLOR="1")
    if args.no_cache:
        env.update(PIP_NO_CACHE_DIR="1", UV_NO_CACHE="1")
    if args.pip:
        env["INSTALLER"] = "pip"
    password = env.get("DEMO_PASSWORD") or "demo-password-123"
    base = f"http://127.0.0.1:{port}"
    plain = urllib.request.build_opener()
    print(f"clone: {checkout} (port {port}{', cold caches' if args.no_cache else ''})", flush=True)

    first_page = staff_costs = second_start = None
    try:
        t0 = time.monotonic()
        run = MakeRun(checkout, env, tmp / "first.log", "first")
        try:
            first_page = wait_for_200(plain, f"{base}/login/", run, t0, args.timeout)
            print(f"first 200 on /login/: {fmt(first_page)}", flush=True)
            if first_page is not None:
                while time.monotonic() - t0 < args.timeout and not run.saw(
                    r"demo history: (complete|already present)"
                ):
                    if run.proc.poll() is not None:
                        break
                    time.sleep(0.5)
                opener = staff_opener(base, password)
                while time.monotonic() - t0 < args.timeout:
                    status, body = get(opener, f"{base}/staff/costs/", timeout=60)
                    if status == 200 and BANNER not in body:
                        staff_costs = time.monotonic() - t0
                        break
                    time.sleep(0.5)
                print(f"first 200 on /staff/costs/ (history complete): {fmt(staff_costs)}")
        finally:
            run.stop()
            kill_leftovers(checkout)

        t0 = time.monotonic()
        run = MakeRun(checkout, env, tmp / "second.log", "second")
        try:
            second_start = wait_for_200(plain, f"{base}/login/", run, t0, args.timeout)
            if second_start is not None:
                time.sleep(3)  # let the history child report "already present"
            reseeded = run.saw(r"install:|Creating|demo history: complete")
        finally:
            run.stop()
            kill_leftovers(checkout)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    how = ", ".join(
        ["pip" if args.pip else "uv"] + (["cold package caches"] if args.no_cache else [])
    )
    print(f"make run from a fresh clone ({how}):")
    print(
        f"  first 200 on /login/          {fmt(first_page)}   "
        f"{verdict(first_page, FIRST_PAGE_TARGET_S)} (≤ {FIRST_PAGE_TARGET_S:.0f} s)"
    )
    print(f"  first 200 on /staff/costs/    {fmt(staff_costs)}   (history complete, as staff)")
    print(
        f"  second start, 200 on /login/  {fmt(second_start)}   "
        f"{verdict(second_start, SECOND_START_TARGET_S)} (≤ {SECOND_START_TARGET_S:.0f} s)"
        f"{'  — but it reinstalled or re-seeded!' if reseeded else ''}"
    )
    ok = (
        verdict(first_page, FIRST_PAGE_TARGET_S) == "PASS"
        and verdict(second_start, SECOND_START_TARGET_S) == "PASS"
        and staff_costs is not None
        and not reseeded
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
