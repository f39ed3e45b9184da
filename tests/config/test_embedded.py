"""`make run`'s embedded services: PostgreSQL and Redis from pip wheels, started the way
scripts/run_dev.py starts them, with the real local settings, migrations, demo data, the staff
cost pages, `suggest_prices`, and a real Celery worker charging once and honouring tier
priority on the embedded broker.

This test runs outside the test database (its own servers in a temporary directory), so it
needs no database fixture; it is slow (migrations, demo seed, a worker) and runs once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR / "scripts"))

import run_dev  # noqa: E402

pytestmark = pytest.mark.worker

# Runs inside the embedded deployment (manage.py shell): staff pages, then the generate →
# capture flow and tier priority through the worker. Prints one JSON line for the test.
PROBE = r"""
import json, time
from decimal import Decimal
from django.test import Client
from accounts.models import User
from credits.models import CreditAccount, EntryKind, LedgerEntry
from generations import services
from generations.models import Job
from infra_costs.models import NodePool
from tests.factories import make_ai_model, make_org

out = {}
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.filter(is_staff=True).first())
for path in ("/staff/costs/", "/staff/pricing/"):
    out[path] = client.get(path).status_code

model = make_ai_model(
    "embedded-probe", pool=NodePool.objects.get(slug="a100"), credits="2",
    backend_config={"mean_s": 1.0, "sigma": 0.01},
)
def submit(org, prompt):
    job, _ = services.generation_submit(
        organization=org, model_slug=model.slug, params={"prompt": prompt}
    )
    return job
def wait(pred, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False

# The demo's pools are fleet-managed; a100 is served statically here (the worker's Redis
# priorities are what this part checks), l4 through the fleet below.
from infra_costs.models import AutoscalePolicy
AutoscalePolicy.objects.filter(pool__slug="a100").update(enabled=False)
free_orgs = [make_org(plan="free") for i in range(4)]
paid_org = make_org(plan="studio")  # before timing starts: creating users hashes passwords
account = CreditAccount.objects.get(organization=paid_org)
before = account.balance
free = [submit(org, f"free {i}") for i, org in enumerate(free_orgs)]
wait(lambda: Job.objects.filter(pk=free[0].pk, status="running").exists())
paid = submit(paid_org, "paid")
ids = [j.pk for j in [*free, paid]]
out["all_terminal"] = wait(
    lambda: not Job.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists()
)
jobs = {j.pk: j for j in Job.objects.filter(pk__in=ids)}
paid_job = jobs[paid.pk]
# Free jobs that were still waiting when the paid one arrived: it must start before all of them.
waiting = [jobs[j.pk].started_at for j in free if jobs[j.pk].started_at > paid_job.created_at]
out["paid_status"] = paid_job.status
out["free_waiting_at_paid_submit"] = len(waiting)
out["paid_before_waiting_free"] = bool(waiting) and all(paid_job.started_at < t for t in waiting)
account.refresh_from_db()
out["paid_charged"] = str(before - account.balance)
out["captures"] = LedgerEntry.objects.filter(
    hold_id=paid_job.hold_id, kind=EntryKind.CAPTURE
).count()
# The fleet: the tick rents l4 nodes up to the schedule's floor (delays shortened here), and
# a job runs only once one of them is hot.
from operations.fleet import fleet_tick
AutoscalePolicy.objects.filter(pool__slug="l4").update(
    provider_config={"rent_delay_s": [1, 1], "model_load_s": 0}
)
fleet_job = services.generation_submit(
    organization=paid_org, model_slug="sdxl", params={"prompt": "fleet"}
)[0]
def fleet_done():
    fleet_tick()
    return Job.objects.filter(pk=fleet_job.pk, status__in=["succeeded", "failed"]).exists()
out["fleet_done"] = wait(fleet_done, timeout=60)
fleet_job.refresh_from_db()
out["fleet_status"] = fleet_job.status
out["fleet_node"] = fleet_job.node
print("PROBE " + json.dumps(out))
"""


def _run(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_make_run_embedded_postgres_and_redis_serve_costs_pricing_and_charge_once():
    var_dir = Path(tempfile.mkdtemp(prefix="gpc-emb-"))  # short: Unix socket paths are limited
    var_dir.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", PYTHONUNBUFFERED="1")
    env["XDG_RUNTIME_DIR"] = str(var_dir / "run")
    services = run_dev.embedded_services_start(env, var_dir=var_dir)
    worker = None
    try:
        assert [s.NAME for s in services] == ["PostgreSQL", "Redis"]
        assert env["DATABASE_URL"].startswith("postgres://") and str(var_dir) in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("unix://")

        for args, timeout in ((["migrate", "--noinput"], 240), (["seed_demo", "--days", "3"], 240)):
            r = _run(args, env, timeout)
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        r = _run(["suggest_prices"], env, 120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "flux-dev" in r.stdout, r.stdout[-3000:]  # a seeded model got a suggestion

        log = var_dir / "worker.log"
        with log.open("wb") as fh:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "-c", "1",
                 "-l", "info", "--without-gossip", "--without-mingle"],
                cwd=BASE_DIR, env=env, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)

        r = _run(["shell", "-c", PROBE], env, 180)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        line = next(x for x in r.stdout.splitlines() if x.startswith("PROBE "))
        probe = json.loads(line.removeprefix("PROBE "))
        print(probe)
        assert probe["/staff/costs/"] == 200
        assert probe["/staff/pricing/"] == 200
        assert probe["all_terminal"] is True
        assert probe["paid_status"] == "succeeded"
        assert probe["paid_charged"] in ("2", "2.000")
        assert probe["captures"] == 1
        assert probe["free_waiting_at_paid_submit"] >= 2, probe
        assert probe["paid_before_waiting_free"] is True, probe
        assert probe["fleet_status"] == "succeeded", probe
        assert probe["fleet_node"].startswith("l4-"), probe
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        for service in reversed(services):
            service.stop()
        shutil.rmtree(var_dir, ignore_errors=True)
