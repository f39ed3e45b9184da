"""Forms of the staff report pages: the period (dates, time zone, window) a report covers, and
its quick links. The pricing page (`generations.staff_views`) uses the same period form."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from urllib.parse import urlencode

from django import forms
from django.urls import reverse
from django.utils import timezone as dj_timezone

from config.errors import ServiceError
from config.web.forms import DateField
from infra_costs.periods import MAX_DAYS, WINDOWS, make_period

DEFAULT_DAYS = 30

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

    start = DateField(label="Start", widget=forms.DateInput(attrs={"type": "date"}))
    end = DateField(
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
