"""Staff page: margins per organization, per plan and per model over a period, least
profitable first, each table also as CSV. The numbers are `planning.margins`'s."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from config.errors import ServiceError
from config.web.decorators import staff_required
from infra_costs.forms import COMMON_ZONES, PeriodForm, presets
from planning import margins as m


def _report(form: PeriodForm) -> m.MarginReport:
    c = form.cleaned_data
    return m.margins_report(c["start"], c["end"], timezone=c["timezone"])


def _rows_view(row: m.MarginRow) -> dict:
    return {
        "row": row,
        "margin": m.signed_usd(row.margin),
        "margin_pct": m.signed_percent(row.margin_fraction),
        "loss": row.margin < 0,
    }


@staff_required
def index(request: HttpRequest) -> HttpResponse:
    form = PeriodForm(request.GET)
    context: dict = {
        "form": form,
        "zones": COMMON_ZONES,
        "presets": presets("planning:margins", form),
    }
    if not form.is_valid():
        return render(request, "planning/margins.html", context, status=400 if request.GET else 200)
    try:
        report = _report(form)
    except ServiceError as exc:  # the form checks the period; this is the engine's last word
        form.add_error(None, exc.detail)
        return render(request, "planning/margins.html", context, status=400)
    query = urlencode(form.query())
    total = report.total()
    context.update(
        {
            "report": report,
            "organizations": [_rows_view(r) for r in report.organizations],
            "plans": [_rows_view(r) for r in report.plans],
            "models": [
                {
                    "m": x,
                    "margin": m.signed_usd(x.margin_per_generation, places=6),
                    "margin_pct": m.signed_percent(x.margin_fraction),
                }
                for x in report.models
            ],
            "total": _rows_view(total),
            "csv_urls": {
                kind: f"{reverse(f'planning:margins_{kind}_csv')}?{query}"
                for kind in ("organizations", "plans", "models")
            },
            "costs_url": f"{reverse('staff_costs:index')}?{query}",
        }
    )
    return render(request, "planning/margins.html", context)


def _csv_view(kind: str):
    @staff_required
    def view(request: HttpRequest) -> HttpResponse:
        form = PeriodForm(request.GET)
        if not form.is_valid():
            errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
        report = _report(form)
        if kind == "models":
            text = m.models_as_csv(report.models)
        else:
            text = m.rows_as_csv(getattr(report, kind), kind=kind)
        c = form.cleaned_data
        name = f"margins-{kind}-{c['start']:%Y-%m-%d}_{c['end']:%Y-%m-%d}.csv"
        response = HttpResponse(text, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    view.__name__ = f"{kind}_csv"
    return view


organizations_csv = _csv_view("organizations")
plans_csv = _csv_view("plans")
models_csv = _csv_view("models")
