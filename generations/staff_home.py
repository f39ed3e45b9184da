"""The staff landing page, mounted at /staff/ (this module is its URLconf too): the fleet,
the last 30 days' costs, prices against costs and alerts at a glance
(`generations.staff_overview`), with links to the cost report, the pricing page and the admin.

Staff only (anonymous → login, others → 404), like the other staff pages. Staff who belong to
no organization land here after logging in (`accounts.views.dashboard`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from config.web.decorators import staff_required
from generations.staff_overview import staff_overview


@staff_required
def staff_home(request: HttpRequest) -> HttpResponse:
    return render(request, "staff/home.html", {"overview": staff_overview()})


app_name = "staff"

urlpatterns = [
    path("", staff_home, name="home"),
]
