"""Staff report pages (web): the unit-cost report of a chosen period with its charts, and its
models and pools tables as CSV.

Staff only: anonymous visitors are sent to log in, logged-in non-staff users get a 404 (the
pages do not exist for them). The numbers are `allocation.unit_cost_report`'s (the same JSON
as `manage.py unit_costs` and the API); the daily and hourly series of the charts come from
`infra_costs.selectors`; the chart geometry from `infra_costs.charts`.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, timedelta
from decimal import Decimal
from functools import wraps
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone as dj_timezone

from config.errors import ServiceError
from infra_costs import charts, report, selectors
from infra_costs.allocation import unit_cost_report
from infra_costs.periods import MAX_DAYS, WINDOWS, make_period

DEFAULT_DAYS = 30
IDLE_WARN = Decimal("0.3")  # an idle share above this shows in red
WEEKLY_AFTER_DAYS = 92  # longer periods: the daily chart and the heatmap go by week

# --- Access ------------------------------------------------------------------------------------


def staff_required(view):
    """Staff only: anonymous → login (and back); logged in but not staff → 404."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapped


# --- The period form ----------------------------------------------------------------------------

COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Australia/Sydney",
)


def today_utc() -> date:
    return dj_timezone.now().astimezone(UTC).date()


def default_period() -> tuple[date, date]:
    end = today_utc()
    return end - timedelta(days=DEFAULT_DAYS), end


class PeriodForm(forms.Form):
    """[start, end) as local dates; `end` is exclusive, as everywhere in the cost reports."""

    start = forms.DateField(label="Start", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(
        label="End (exclusive)",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The day after the last day of the report.",
    )
    timezone = forms.CharField(
        label="Time zone",
        initial="UTC",
        max_length=64,
        widget=forms.TextInput(attrs={"list": "tz-list", "autocomplete": "off"}),
    )

    def __init__(self, data=None, **kwargs):
        start, end = default_period()
        defaults = {"start": start, "end": end, "timezone": "UTC", **self.extra_defaults()}
        merged = dict(defaults)
        if data:
            merged.update({k: v for k, v in data.items() if k in self.base_fields and v != ""})
        super().__init__(merged, **kwargs)

    @staticmethod
    def extra_defaults() -> dict:
        return {}

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end:
            if end <= start:
                self.add_error("end", "Must be after the start (the end is exclusive).")
            elif (end - start).days > MAX_DAYS:
                self.add_error("end", f"At most {MAX_DAYS} days after the start.")
        if not self.errors:
            try:
                make_period(
                    start,
                    end,
                    window=cleaned.get("window", "day"),
                    timezone=cleaned.get("timezone") or "UTC",
                )
            except ServiceError as exc:
                for name, messages in (exc.errors or {"end": [exc.detail]}).items():
                    self.add_error(name if name in self.fields else None, messages)
        return cleaned

    def query(self, **overrides) -> dict[str, str]:
        data = {
            name: (value.isoformat() if isinstance(value, date) else str(value))
            for name, value in self.cleaned_data.items()
        }
        data.update(overrides)
        return data


class ReportForm(PeriodForm):
    window = forms.ChoiceField(
        label="Window", choices=[(w, w.title()) for w in WINDOWS], initial="day"
    )
    idle_policy = forms.ChoiceField(
        label="Idle cost",
        choices=[
            ("weighted", "Fully loaded"),
            ("separate", "Separate line"),
        ],
        initial="weighted",
    )

    @staticmethod
    def extra_defaults() -> dict:
        return {"window": "day", "idle_policy": "weighted"}

    field_order = ("start", "end", "window", "idle_policy", "timezone")


def presets(url_name: str, form: PeriodForm) -> list[dict]:
    """Quick links: the last 7, 30 and 90 days, this month and last month."""
    today = today_utc()
    first = today.replace(day=1)
    prev_first = (first - timedelta(days=1)).replace(day=1)
    options = [
        ("Last 7 days", today - timedelta(days=7), today),
        ("Last 30 days", today - timedelta(days=30), today),
        ("Last 90 days", today - timedelta(days=90), today),
        ("This month", first, today + timedelta(days=1)),
        (f"{prev_first:%B}", prev_first, first),
    ]
    base = form.query() if form.is_valid() else {}
    out = []
    for label, start, end in options:
        params = {**base, "start": start.isoformat(), "end": end.isoformat()}
        current = base.get("start") == params["start"] and base.get("end") == params["end"]
        out.append(
            {"label": label, "url": f"{reverse(url_name)}?{urlencode(params)}", "current": current}
        )
    return out


MODEL_SUM_FIELDS = (
    "failed",
    "gpu_hours",
    "active_cost_usd",
    "allocated_cost_usd",
    "fully_loaded_cost_usd",
    "external_cost_usd",
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
    api_query = urlencode(form.query())
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
            "api_url": f"{reverse('api-costs-unit-costs')}?{api_query}",
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


def pools_csv_text(data: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(report.POOL_COLUMNS)
    for row in data["pools"]:
        writer.writerow(["" if row[c] is None else row[c] for c in report.POOL_COLUMNS])
    return out.getvalue()


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
        text = report.as_csv(data) if kind == "models" else pools_csv_text(data)
        return _csv_response(text, f"{name}.csv")

    view.__name__ = f"{kind}_csv"
    return view


models_csv = _csv_view("models")
pools_csv = _csv_view("pools")
