"""URLconf of the staff fleet page, mounted at /staff/fleet/ (namespace `staff_fleet`)."""

from __future__ import annotations

from django.urls import path

from operations.views.fleet import fleet_action, fleet_index

app_name = "staff_fleet"

urlpatterns = [
    path("", fleet_index, name="index"),
    path("<slug:pool>/action/", fleet_action, name="action"),
]
