"""URLconf of the staff landing page, mounted at /staff/ (namespace `staff`)."""

from __future__ import annotations

from django.urls import path

from operations.views.exports import exports
from operations.views.staff_home import staff_home

app_name = "staff"

urlpatterns = [
    path("", staff_home, name="home"),
    path("exports/", exports, name="exports"),
]
