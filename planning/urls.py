"""Staff planning pages, mounted at /staff/planning/ (each feature adds its routes here)."""

from django.urls import path  # noqa: F401

app_name = "planning"

urlpatterns: list = []
