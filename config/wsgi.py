import os

from django.core.wsgi import get_wsgi_application

from config import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

tracing.tracing_start(role="web")  # OTEL_ENABLED only; before the middleware is loaded
application = get_wsgi_application()
