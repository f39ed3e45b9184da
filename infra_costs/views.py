"""Staff report pages (web): the unit-cost report of a chosen period with its charts, and its
models and pools tables as CSV.

Staff only: anonymous visitors are sent to log in, logged-in non-staff users get a 404 (the
pages do not exist for them). The numbers are `allocation.unit_cost_report`'s (the same JSON
as `manage.py unit_costs` and the API); the daily and hourly series of the charts come from
`infra_costs.selectors`; the chart geometry from `infra_costs.charts`.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from config.web.decorators import staff_required
from infra_costs import charts, report, selectors
from infra_costs.allocation import unit_cost_report
from infra_costs.forms import COMMON_ZONES, ReportForm, presets

IDLE_WARN = Decimal("0.3")  # an idle share above this shows in red
WEEKLY_AFTER_DAYS = 92  # longer periods: the daily chart and the heatmap go by week

MODEL_SUM_FIELDS = (
    "failed",
    "gpu_hours",
    "active_cost_usd",
    "allocated_cost_usd",
    "fully_loaded_cost_usd",
    "external_cost_usd",
    "stage_cost_usd",
)


def model_totals(models: list[dict]) -> dict[str, Decimal]:
    """Column sums of the models table (exact: sums of the report's 6-dp figures)."""
    return {f: sum((Decimal(str(m[f])) for m in models), Decimal(0)) for f in MODEL_SUM_FIELDS}


def _report_for(form: ReportForm) -> dict:
    data = form.cleaned_data
    return unit_cost_report(
        data["start"],
        data["end"],
        window=data["window"],
        idle_policy=data["idle_policy"],
        timezone=data["timezone"],
    )


# --- The report page --------------------------------------------------------------------------


@staff_required
def unit_costs(request: HttpRequest) -> HttpResponse:
    form = ReportForm(request.GET)
    context: dict = {
        "form": form,
        "zones": COMMON_ZONES,
        "presets": presets("staff_costs:index", form),
    }
    if not form.is_valid():
        return render(request, "staff/costs.html", context, status=400 if request.GET else 200)
    data = _report_for(form)
    cleaned = form.cleaned_data
    start, end, tz = cleaned["start"], cleaned["end"], cleaned["timezone"]
    weekly = (end - start).days > WEEKLY_AFTER_DAYS
    hours = selectors.pool_hours(start, end, timezone=tz)
    days = selectors.pool_days(hours, start, end, weekly=weekly)
    heat = selectors.idle_heatmap(hours, start, end, weekly=weekly)
    pool_order = [p["pool"] for p in data["pools"]]
    query = urlencode(form.query())
    context.update(
        {
            "report": data,
            "period": data["period"],
            "totals": data["totals"],
            "model_totals": model_totals(data["models"]),
            "idle_high": Decimal(data["totals"]["idle_fraction"] or 0) >= IDLE_WARN,
            "last_day": end - timedelta(days=1),
            "weekly": weekly,
            "cost_chart": charts.cost_per_generation_chart(data["models"]),
            "idle_chart": charts.idle_chart(data["pools"], data["totals"]["idle_fraction"]),
            "daily_charts": [
                charts.daily_chart(p, days[p], weekly=weekly) for p in pool_order if p in days
            ],
            "heatmaps": [
                charts.heatmap(p, heat[p], weekly=weekly) for p in pool_order if p in heat
            ],
            "models_csv_url": f"{reverse('staff_costs:models_csv')}?{query}",
            "pools_csv_url": f"{reverse('staff_costs:pools_csv')}?{query}",
            "stages_csv_url": f"{reverse('staff_costs:stages_csv')}?{query}",
            "api_url": f"{reverse('api-costs-unit-costs')}?{query}",
            "pricing_url": f"{reverse('staff_pricing:index')}?"
            + urlencode({"start": start.isoformat(), "end": end.isoformat(), "timezone": tz}),
        }
    )
    return render(request, "staff/costs.html", context)


# --- CSV ---------------------------------------------------------------------------------------


def _csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _csv_view(kind: str):
    @staff_required
    def view(request: HttpRequest) -> HttpResponse:
        form = ReportForm(request.GET)
        if not form.is_valid():
            errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
        data = _report_for(form)
        c = form.cleaned_data
        name = f"unit-costs-{kind}-{c['start']:%Y-%m-%d}_{c['end']:%Y-%m-%d}"
        if c["window"] != "day" or c["idle_policy"] != "weighted":
            name += f"-{c['window']}-{c['idle_policy']}"
        render = {"models": report.as_csv, "pools": report.pools_as_csv}
        text = render.get(kind, report.stages_as_csv)(data)
        return _csv_response(text, f"{name}.csv")

    view.__name__ = f"{kind}_csv"
    return view


models_csv = _csv_view("models")
pools_csv = _csv_view("pools")
stages_csv = _csv_view("stages")
