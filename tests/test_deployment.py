"""Deployment files: docker-compose.yml validates (with `docker compose config` where it is
installed, against the Compose Specification JSON Schema otherwise) and has what one host needs;
the Dockerfile is multi-stage and runs as an unprivileged user; `manage.py check --deploy` is
clean with the production settings."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_SCHEMA = ROOT / "tests" / "schemas" / "compose_spec.json"
APP_SERVICES = {"web", "worker", "beat"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _docker_compose_works() -> bool:
    if not shutil.which("docker"):
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def test_the_compose_file_is_valid_against_the_compose_specification(compose):
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


@pytest.mark.skipif(not _docker_compose_works(), reason="docker compose is not installed")
def test_docker_compose_config_accepts_the_file():
    env = {**os.environ, "SECRET_KEY": "x" * 50, "POSTGRES_PASSWORD": "pw"}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_one_host_runs_web_worker_one_beat_postgres_and_redis_with_health_checks(compose):
    services = compose["services"]
    assert APP_SERVICES | {"postgres", "redis", "migrate"} <= set(services)
    for name in APP_SERVICES | {"postgres", "redis"}:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
    assert "/healthz" in json.dumps(services["web"]["healthcheck"]["test"])
    # One beat: no replicas, no scaling.
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "beat" in services["beat"]["command"] and "worker" in services["worker"]["command"]


def test_app_services_share_one_image_and_wait_for_migrations_and_healthy_stores(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"] == services["migrate"]["image"]
        env = service["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS"} <= set(env)
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
        deps = service["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert "migrate" in services["migrate"]["command"]


def test_state_lives_in_named_volumes_and_secrets_are_not_in_the_file(compose):
    declared = set(compose["volumes"])
    used = {
        v.split(":", 1)[0]
        for s in compose["services"].values()
        for v in s.get("volumes", [])
        if isinstance(v, str) and not v.startswith((".", "/"))
    }
    assert {"postgres-data", "redis-data"} <= used <= declared
    text = COMPOSE.read_text()
    assert "${SECRET_KEY:?" in text and "${POSTGRES_PASSWORD:?" in text  # required, not defaulted
    assert not re.search(r"SECRET_KEY:\s*['\"]?[A-Za-z0-9]", text)


def _stages(text: str) -> list[list[str]]:
    """Dockerfile instructions (continuations joined), split into build stages."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_the_dockerfile_is_multi_stage_non_root_with_gunicorn_and_a_health_check():
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2
    assert all(s[0].split()[1] == "python:3.11-slim" for s in stages)
    final = stages[-1]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    user_at = max(i for i, ln in enumerate(final) if ln.upper().startswith("USER "))
    cmd_at = max(i for i, ln in enumerate(final) if ln.upper().startswith("CMD "))
    assert user_at < cmd_at
    assert any(ln.upper().startswith("COPY --FROM=") for ln in final)
    assert any("HEALTHCHECK" in ln and "/healthz" in ln for ln in final)
    assert "gunicorn config.wsgi" in final[cmd_at]
    build = "\n".join(stages[0])
    assert "collectstatic" in build and "uv pip install" in build


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env"} <= ignored


def _production_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Test-only switches check --deploy rightly refuses in production.
        if k not in {"DJANGO_ALLOW_ASYNC_UNSAFE", "DEBUG"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="credits.example.com",
        CSRF_TRUSTED_ORIGINS="https://credits.example.com",
        SITE_URL="https://credits.example.com",
        TRUST_X_FORWARDED_PROTO="true",
    )
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    return env


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_redirects_plain_http_to_https_except_the_health_check():
    script = (
        "from django.test import Client; c = Client(HTTP_HOST='credits.example.com'); "
        "print(c.get('/api/schema/').status_code, c.get('/healthz').status_code)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    schema_status, health_status = map(int, result.stdout.split()[-2:])
    assert schema_status == 301
    assert health_status in (200, 503)
