# syntax=docker/dockerfile:1
# GPU Credits: one image for web (gunicorn), worker and beat (celery). docs/deployment.md.
#
#   docker build -t gpu-credits .
#   docker run --env-file .env gpu-credits                      # web on :8000
#   docker run --env-file .env gpu-credits celery -A config worker -l info
#   docker run --env-file .env gpu-credits celery -A config beat -l info
#   docker run --env-file .env gpu-credits python manage.py migrate --noinput

# --- build: resolve and install the dependencies into a virtualenv -------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install uv
WORKDIR /src
# Only what the install needs, so the layer is cached until the dependencies change.
COPY pyproject.toml README.md ./
RUN /opt/venv/bin/uv pip install --python /opt/venv/bin/python --compile-bytecode .
COPY . .
# collectstatic reads the settings, which want a database URL and a secret: placeholders
# that exist only in this build step (nothing connects to them).
RUN DJANGO_SETTINGS_MODULE=config.settings.production \
    SECRET_KEY=build-only-not-a-secret \
    DATABASE_URL=postgres://build@127.0.0.1:5432/build \
    /opt/venv/bin/python manage.py collectstatic --noinput

# --- runtime: the virtualenv, the source and the static files; runs as an unprivileged user ----
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    PORT=8000 \
    WEB_CONCURRENCY=4
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=app:app /src /app
# var/ holds generated outputs and the finish spool: the only writable path (a volume in compose).
RUN mkdir -p /app/var/spool && chown -R app:app /app/var
USER app:app
EXPOSE 8000
# /healthz answers 503 when PostgreSQL is unreachable; plain HTTP is exempt from the HTTPS
# redirect. The Host header is the first ALLOWED_HOSTS entry, so the host check passes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.'); h = 'localhost' if h in ('', '*') else h; u.urlopen(u.Request('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', headers={'Host': h}), timeout=4)"]
CMD ["sh", "-c", "exec gunicorn config.wsgi:application --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY} --timeout 30 --graceful-timeout 30 --access-logfile - --forwarded-allow-ips=${FORWARDED_ALLOW_IPS:-127.0.0.1}"]
