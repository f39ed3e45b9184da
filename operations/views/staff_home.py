"""The staff landing page, mounted at /staff/ (`operations.urls_staff`): the open alerts of the
alert rules and the last resolved ones (`operations.alerts.selectors`), then the fleet, the last
30 days' costs, prices against costs and what else needs attention
(`generations.staff_overview`), with links to the cost report, the pricing page and the admin.

Staff only (anonymous → login, others → 404), like the other staff pages. Staff who belong to
no organization land here after logging in (`accounts.views.dashboard`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from config.web.decorators import staff_required
from generations.staff_overview import staff_overview
from operations.alerts import selectors as alert_selectors


@staff_required
def staff_home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "staff/home.html",
        {
            "overview": staff_overview(),
            "open_alerts": alert_selectors.alerts_open(),
            "resolved_alerts": alert_selectors.alerts_recently_resolved(),
        },
    )
