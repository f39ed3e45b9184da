"""Web views of credits: the overview (balance card, live grants, 30-day usage chart), the ledger
(filters, keyset pagination, htmx) and its CSV export.

Thin, like accounts.views: reads come from `credits.selectors`, always scoped to
`request.organization`; nothing here moves credits. Every page works without JavaScript; htmx
requests get the ledger panel back instead of the whole page.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from accounts.tenancy import tenant_scoped
from config.web.decorators import organization_required
from config.web.forms import DateField
from config.web.http import is_partial
from config.web.paging import decode_cursor, encode_cursor, keyset_iter, keyset_page
from credits import selectors
from credits.display import entry_row
from credits.models import EntryKind, LedgerEntry

PAGE_SIZE = 50
USAGE_DAYS = 30
CSV_HEADER = [
    "created_at",
    "sequence",
    "kind",
    "amount",
    "balance_delta",
    "held_delta",
    "balance_after",
    "held_after",
    "grant_id",
    "hold_key",
    "reason",
]

# --- Balance card -------------------------------------------------------------------------------


def card_context(organization) -> dict:
    """What the balance card shows: the summary plus the next expiry (every grant expiring at
    that same moment counts) and the overage gauge."""
    summary = selectors.balance_summary(organization=organization)
    next_at = summary.next_expiry.expires_at if summary.next_expiry else None
    next_amount = (
        sum((g.remaining for g in summary.grants if g.expires_at == next_at), Decimal(0))
        if next_at
        else None
    )
    return {
        "summary": summary,
        "next_expiry_at": next_at,
        "next_expiry_amount": next_amount,
        "next_expiry_this_year": bool(next_at) and next_at.year == timezone.now().year,
        "has_overage": summary.overage_cap > 0,
        "in_overage": summary.overage_used > 0,
    }


# --- Usage chart (inline SVG, drawn server-side) ------------------------------------------------

CHART_W = 720
CHART_H = 340
PLOT_TOP = 44  # room above the top gridline for the scale labels
PLOT_BOTTOM = CHART_H - 48  # room below the baseline for the day labels


def _nice_ceiling(value: Decimal | int) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ that is ≥ value (1 for zero)."""
    value = Decimal(value)
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for _ in range(2):
        for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
            candidate = step.scaleb(exponent)
            if candidate >= value:
                return candidate.normalize() if candidate >= 1 else candidate
        exponent += 1
    return value


@dataclass(frozen=True)
class ChartDay:
    day: date
    credits: Decimal
    generations: int
    released: int
    x: float  # bar left
    y: float  # bar top
    w: float
    h: float
    cx: float  # generations point
    cy: float
    label: str | None  # axis label under this bar, if any
    label_x: float
    anchor: str
    slot_x: float  # left of the day's full-height hover area


@dataclass(frozen=True)
class UsageChart:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    plot_mid: float
    slot: float
    days: list[ChartDay]
    credits_max: Decimal
    generations_max: int
    generations_points: str
    total_credits: Decimal
    total_generations: int
    busiest: ChartDay | None
    first_day: date
    last_day: date

    @property
    def empty(self) -> bool:
        return self.total_credits == 0 and self.total_generations == 0

    @property
    def center_x(self) -> float:
        return self.width / 2

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.plot_top

    @property
    def scale_y(self) -> int:  # baseline of the labels above the top gridline
        return self.plot_top - 12

    @property
    def mid_label_y(self) -> float:
        return self.plot_mid - 8

    @property
    def day_label_y(self) -> int:
        return self.height - 12

    @property
    def credits_mid(self) -> Decimal:
        return self.credits_max / 2

    @property
    def generations_mid(self) -> Decimal:
        return Decimal(self.generations_max) / 2


def usage_chart(rows: list[selectors.UsageRow]) -> UsageChart:
    """Geometry of the bar chart (credits per day) with a line (generations per day), in a
    CHART_W × CHART_H viewBox. Scales round up to a nice number; days are labelled weekly."""
    n = len(rows)
    credits_max = _nice_ceiling(max((r.credits_spent for r in rows), default=Decimal(0)))
    gens_top = max((r.generations for r in rows), default=0)
    generations_max = int(_nice_ceiling(gens_top)) if gens_top > 1 else 2
    generations_max += generations_max % 2  # whole generations at the middle gridline too
    plot_h = PLOT_BOTTOM - PLOT_TOP
    slot = CHART_W / max(n, 1)
    bar_w = slot * 0.7
    labelled = {0, n - 1} | {i for i in range(0, n - 4, 7)}
    days = []
    for i, row in enumerate(rows):
        h = float(row.credits_spent / credits_max) * plot_h
        if row.credits_spent > 0:
            h = max(h, 2.0)  # a tiny spend stays visible
        day = date.fromisoformat(row.key)
        days.append(
            ChartDay(
                day=day,
                credits=row.credits_spent,
                generations=row.generations,
                released=row.released,
                x=round(i * slot + (slot - bar_w) / 2, 2),
                y=round(PLOT_BOTTOM - h, 2),
                w=round(bar_w, 2),
                h=round(h, 2),
                cx=round(i * slot + slot / 2, 2),
                cy=round(PLOT_BOTTOM - row.generations / generations_max * plot_h, 2),
                label=f"{day.day} {day:%b}" if i in labelled else None,
                label_x=round(0 if i == 0 else CHART_W if i == n - 1 else i * slot + slot / 2, 2),
                anchor="start" if i == 0 else "end" if i == n - 1 else "middle",
                slot_x=round(i * slot, 2),
            )
        )
    busiest = max(days, key=lambda d: (d.credits, d.day), default=None)
    return UsageChart(
        width=CHART_W,
        height=CHART_H,
        plot_top=PLOT_TOP,
        plot_bottom=PLOT_BOTTOM,
        plot_mid=(PLOT_TOP + PLOT_BOTTOM) / 2,
        slot=round(slot, 2),
        days=days,
        credits_max=credits_max,
        generations_max=generations_max,
        generations_points=" ".join(f"{d.cx},{d.cy}" for d in days),
        total_credits=sum((r.credits_spent for r in rows), Decimal(0)),
        total_generations=sum(r.generations for r in rows),
        busiest=busiest if busiest and busiest.credits > 0 else None,
        first_day=days[0].day if days else timezone.now().date(),
        last_day=days[-1].day if days else timezone.now().date(),
    )


# --- Overview -----------------------------------------------------------------------------------


@organization_required
@tenant_scoped
def overview(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    card = card_context(organization)
    chart = usage_chart(selectors.usage_daily(organization=organization, days=USAGE_DAYS))
    return render(
        request,
        "credits/overview.html",
        {
            "organization": organization,
            "credit_card": card,
            "grants": card["summary"].grants,
            "chart": chart,
            "now": timezone.now(),
        },
    )


# --- Ledger: filters, keyset cursors ------------------------------------------------------------


class LedgerFilterForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("", "All kinds"), *EntryKind.choices],
        required=False,
        label="Kind",
        widget=forms.Select(attrs={"data-autosubmit": ""}),
    )
    date_from = DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "“To” is before “From”.")
        return data


@dataclass(frozen=True)
class LedgerFilters:
    kind: str
    date_from: date | None
    date_to: date | None

    @property
    def start(self) -> datetime | None:
        return selectors.datetime_at_midnight(self.date_from) if self.date_from else None

    @property
    def end(self) -> datetime | None:
        """Exclusive: midnight after `date_to` (dates are UTC days, both ends included)."""
        if self.date_to is None:  # the form keeps dates in `config.dates`' range
            return None
        return selectors.datetime_at_midnight(self.date_to + timedelta(days=1))

    @property
    def params(self) -> dict[str, str]:
        params = {
            "kind": self.kind,
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in params.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.params)


def _ledger_filters(request: HttpRequest) -> tuple[LedgerFilterForm, LedgerFilters]:
    """The GET filters. Invalid fields are reported on the form and ignored; the valid ones
    still apply."""
    form = LedgerFilterForm(request.GET or None)
    data: dict = {}
    if form.is_bound:
        form.is_valid()  # cleaned_data keeps the valid fields only
        data = form.cleaned_data
        for name in form.errors:
            if name in form.fields:
                form.fields[name].widget.attrs.update(
                    {"aria-invalid": "true", "aria-describedby": f"{name}-error"}
                )
    return form, LedgerFilters(
        kind=data.get("kind") or "",
        date_from=data.get("date_from"),
        date_to=data.get("date_to"),
    )


def _entries(organization, filters: LedgerFilters):
    return selectors.entries_filtered(
        organization=organization,
        kind=filters.kind or None,
        since=filters.start,
        until=filters.end,
    ).select_related("grant", "hold", "hold__job")


def _url(name: str, params: dict[str, str]) -> str:
    query = urlencode(params)
    return reverse(name) + (f"?{query}" if query else "")


@organization_required
@tenant_scoped
def ledger(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form, filters = _ledger_filters(request)
    problems = []
    if form.is_bound and form.errors:
        problems.append("Some filters were not valid and were ignored; see below.")
    before = after = None
    if request.GET.get("before"):
        before = decode_cursor(request.GET["before"])
        if before is None:
            problems.append("That page link is not valid; showing the newest entries.")
    elif request.GET.get("after"):
        after = decode_cursor(request.GET["after"])
        if after is None:
            problems.append("That page link is not valid; showing the newest entries.")

    qs = _entries(organization, filters)
    page = keyset_page(qs, before=before, after=after, limit=PAGE_SIZE)
    entries = page.items
    params = filters.params
    newer_url = older_url = None
    if page.has_newer:
        cursor = {"after": encode_cursor(entries[0])} if entries else {}
        newer_url = _url("credits:ledger", {**params, **cursor})
    if page.has_older:
        older_url = _url("credits:ledger", {**params, "before": encode_cursor(entries[-1])})
    context = {
        "organization": organization,
        "form": form,
        "filters": filters,
        "problems": problems,
        "rows": [entry_row(e, organization=organization) for e in entries],
        "newer_url": newer_url,
        "older_url": older_url,
        "newest_url": _url("credits:ledger", params) if page.has_newer else None,
        "csv_url": _url("credits:ledger_csv", params),
        "clear_url": reverse("credits:ledger"),
        "page_size": PAGE_SIZE,
    }
    template = (
        "credits/partials/ledger_panel.html" if is_partial(request) else "credits/ledger.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- CSV export ---------------------------------------------------------------------------------


class _Echo:
    """A file-like object whose write() returns the line: csv.writer → streamed chunks."""

    def write(self, value: str) -> str:
        return value


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: str) -> str:
    """Free text that a spreadsheet would run as a formula gets a leading apostrophe."""
    return "'" + value if value and value.startswith(_FORMULA_START) else value


def _decimal(value: Decimal) -> str:
    return f"{value:f}"


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def csv_row(entry: LedgerEntry) -> list[str]:
    return [
        _timestamp(entry.created_at),
        str(entry.sequence),
        entry.kind,
        _decimal(entry.amount),
        _decimal(entry.balance_delta),
        _decimal(entry.held_delta),
        _decimal(entry.balance_after),
        _decimal(entry.held_after),
        str(entry.grant_id or ""),
        _text_cell(entry.hold.key if entry.hold_id else ""),
        _text_cell(entry.reason),
    ]


@organization_required
def ledger_csv(request: HttpRequest) -> HttpResponse:
    """The ledger with the page's filters, streamed in keyset batches (any size)."""
    organization = request.organization
    form, filters = _ledger_filters(request)
    if form.is_bound and form.errors:
        lines = [f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()]
        return HttpResponse(
            "Invalid filters.\n" + "\n".join(lines) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    qs = _entries(organization, filters)
    writer = csv.writer(_Echo(), lineterminator="\r\n")

    def rows():
        yield writer.writerow(CSV_HEADER)
        for entry in keyset_iter(qs):
            yield writer.writerow(csv_row(entry))

    filename = f"credits-ledger-{organization.slug}-{timezone.now():%Y-%m-%d}.csv"
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
