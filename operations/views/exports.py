"""Staff page /staff/exports/: a period form and, for each dataset of
`operations.exports.datasets`, its CSV and Parquet links (the staff API's export endpoints,
which accept the staff session as well as a staff API token)."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from config.exports import datasets
from config.web.decorators import staff_required
from infra_costs.forms import COMMON_ZONES, PeriodForm, presets
from infra_costs.periods import WINDOWS
from operations.exports.formats import FORMATS


class ExportForm(PeriodForm):
    window = forms.ChoiceField(
        label="Window (unit costs)",
        choices=[(w, w.title()) for w in WINDOWS],
        initial="day",
    )

    @staticmethod
    def extra_defaults() -> dict:
        return {"window": "day"}

    field_order = ("start", "end", "window", "timezone")


@staff_required
def exports(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.GET)
    context: dict = {
        "form": form,
        "zones": COMMON_ZONES,
        "presets": presets("staff:exports", form),
        "token_admin_url": reverse("admin:operations_staffapitoken_changelist"),
    }
    if not form.is_valid():
        return render(request, "staff/exports.html", context, status=400 if request.GET else 200)
    query = form.query()
    context["datasets"] = [
        {
            "dataset": d,
            "links": [
                (
                    fmt,
                    reverse("api-export-file", kwargs={"dataset": d.slug, "fmt": fmt})
                    + "?"
                    + urlencode({k: v for k, v in query.items() if d.windowed or k != "window"}),
                )
                for fmt in FORMATS
            ],
        }
        for d in datasets().values()
    ]
    return render(request, "staff/exports.html", context)
