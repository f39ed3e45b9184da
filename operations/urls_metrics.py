"""`GET /metrics` (config.urls mounts this at `metrics`)."""

from django.urls import path

from operations.views.metrics import metrics

urlpatterns = [
    path("", metrics, name="metrics"),
]
