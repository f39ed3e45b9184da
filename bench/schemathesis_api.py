"""Schema-driven fuzzing of API v1: schemathesis over `/api/schema/` against a live server.

What runs: the script migrates its own database (default `gpucredits_schemathesis_bench`),
creates an organization on the studio plan with credits, an API key and one job, starts
`gunicorn config.wsgi` (config.settings.test: DEBUG off, the simulated backend; no worker, so
submitted jobs stay queued) on a free local port and runs

    schemathesis run http://127.0.0.1:<port>/api/schema/ --checks all --max-examples N
        -H "Authorization: Bearer <key>"

with every check (no 5xx, status codes, content types, headers and bodies as the schema says,
invalid data refused, valid data accepted, …) and bench/schemathesis.toml, which lists the few
refusals a schema can't express (opaque cursors, date ranges, a model's own params schema).
The exit status is schemathesis's: 0 when it found nothing. Staff-only endpoints answer 403
to the API key (documented), which schemathesis accepts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gpucredits_schemathesis_bench \\
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/schemathesis_api.py [-n 25]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_schemathesis_bench"
SETTINGS = "config.settings.test"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare() -> str:
    """Plans, models, one organization with credits and a job; its API key (new each run)."""
    from django.core.management import call_command

    from accounts import services as account_services
    from accounts.models import Organization
    from generations import services as generation_services
    from generations.models import AIModel

    call_command("seed_demo", "--days", "1", verbosity=0)
    org = Organization.objects.filter(slug="fuzz").first()
    if org is None:
        call_command("create_org", "fuzz", "--plan", "studio", "--grant", "1000000", verbosity=0)
        org = Organization.objects.get(slug="fuzz")
    _, key = account_services.api_key_create(organization=org, name="schemathesis", actor=None)
    model = AIModel.objects.filter(is_active=True).order_by("slug").first()
    if model is not None:
        generation_services.generation_submit(
            organization=org, model_slug=model.slug, params={"prompt": "a lighthouse"}
        )
    return key


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", "--max-examples", type=int, default=25, help="per operation (25)")
    p.add_argument("--seed", type=int, default=None, help="schemathesis's random seed")
    p.add_argument("--workers", default="1", help="schemathesis workers (1)")
    p.add_argument("extra", nargs="*", help="more schemathesis options, after --")
    args = p.parse_args()

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    _django.ensure_database(url)
    _django.setup(url)
    key = _prepare()

    port = _free_port()
    root = _django.ROOT
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": url}
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"],
        cwd=root,
        env=env,
    )
    try:
        schema_url = f"http://127.0.0.1:{port}/api/schema/"
        for _ in range(100):
            try:
                with urllib.request.urlopen(schema_url, timeout=2) as r:
                    json.loads(r.read()) if r.headers.get_content_type().endswith("json") else None
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"gunicorn exited ({server.returncode})") from None
                time.sleep(0.2)
        cmd = [
            str(bin_dir / "schemathesis"),
            "--config-file",
            str(CONFIG),
            "run",
            schema_url,
            "--checks",
            "all",
            "--max-examples",
            str(args.max_examples),
            "--workers",
            str(args.workers),
            "--header",
            f"Authorization: Bearer {key}",
            "--header",
            "Accept: application/json",
            *(["--seed", str(args.seed)] if args.seed is not None else []),
            *args.extra,
        ]
        return subprocess.call(cmd, cwd=root, env=env)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
