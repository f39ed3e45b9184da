"""The capacity plan page (staff), /staff/costs/capacity/: per pool the `recommend_capacity`
result — a week chart (busy nodes, current schedule, recommended set-points), the cost per
week of both, the replay of both — with its parameters in a GET form; and "Apply as schedule"
(POST, with a reason), which writes the recommendation as the pool's new schedule version.

The apply recomputes the recommendation from the posted parameters (the same window: `end` is
posted too); it never trusts posted set-points."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.errors import ServiceError
from config.web.decorators import staff_required
from infra_costs.capacity import (
    DEFAULT_BUFFER,
    DEFAULT_PERCENTILE,
    DEFAULT_WEEKS,
    MAX_WEEKS,
    Recommendation,
    recommend_capacity,
)
from infra_costs.capacity.recommend import MAX_MIN_NODES
from infra_costs.capacity.services import REASON_MAX, schedule_version_apply
from infra_costs.charts.capacity import capacity_chart
from infra_costs.forms import today_utc
from infra_costs.models import NodePool, ScheduleVersion
from infra_costs.periods import zone
from infra_costs.schedule import active_set_points, pool_sizes

HISTORY_SHOWN = 5


class CapacityForm(forms.Form):
    weeks = forms.IntegerField(
        label="Weeks of history", min_value=1, max_value=MAX_WEEKS, initial=DEFAULT_WEEKS
    )
    percentile = forms.DecimalField(
        label="Percentile", min_value=0, max_value=100, max_digits=6, decimal_places=3
    )
    buffer = forms.DecimalField(
        label="Buffer (fraction)", min_value=0, max_value=10, max_digits=6, decimal_places=3
    )
    min_nodes = forms.IntegerField(
        label="Min nodes",
        min_value=0,
        max_value=MAX_MIN_NODES,
        required=False,
        help_text="Empty: each pool's own minimum.",
    )
    end = forms.DateField(required=False, widget=forms.HiddenInput)

    def __init__(self, data=None, **kwargs):
        defaults = {
            "weeks": DEFAULT_WEEKS,
            "percentile": DEFAULT_PERCENTILE,
            "buffer": DEFAULT_BUFFER,
            "min_nodes": "",
            "end": "",
        }
        if data is not None:
            merged = {k: data.get(k, v) for k, v in defaults.items()}
            data = {k: ("" if v is None else v) for k, v in merged.items()}
        else:
            data = defaults
        super().__init__(data, **kwargs)

    def params(self) -> dict:
        c = self.cleaned_data
        return {
            "weeks": c["weeks"],
            "percentile": c["percentile"],
            "buffer": c["buffer"],
            "min_nodes": c["min_nodes"],
            "end": c["end"] or today_utc(),
        }


class ApplyForm(CapacityForm):
    reason = forms.CharField(label="Why", max_length=REASON_MAX, strip=True)

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        if data is not None:
            self.data = {**self.data, "reason": data.get("reason", "")}


def _recommend(pool: NodePool, params: dict) -> Recommendation:
    return recommend_capacity(
        pool,
        weeks=params["weeks"],
        percentile=params["percentile"],
        buffer=params["buffer"],
        min_nodes=params["min_nodes"],
        end=params["end"],
    )


def _current_per_slot(pool: NodePool, rec: Recommendation) -> list[int] | None:
    """The current schedule over one local week (Monday first), or None without one."""
    set_points = list(active_set_points(pool))
    if not set_points:
        return None
    tz = zone(rec.timezone)
    local_end = rec.end_at.astimezone(tz)
    monday = (local_end - timedelta(days=local_end.weekday() + 7)).date()
    out = []
    for slot in range(168):
        day = monday + timedelta(days=slot // 24)
        t = datetime(day.year, day.month, day.day, slot % 24, tzinfo=tz)
        out.append(pool_sizes(set_points, t, t + timedelta(seconds=1), rec.timezone)[0][1])
    return out


def _pool_plan(pool: NodePool, params: dict, apply_error: bool = False) -> dict:
    try:
        rec = _recommend(pool, params)
    except ServiceError as exc:
        return {"pool": pool, "error": exc.detail}
    current = _current_per_slot(pool, rec) if rec.current_basis == "schedule" else None
    chart = capacity_chart(pool.slug, rec.mean_demand, current, rec.nodes)
    return {
        "pool": pool,
        "rec": rec,
        "chart": chart,
        "hours": list(zip(chart.bars, rec.nodes, strict=True)),
        "apply_error": apply_error,
        "current_nh": rec.current_node_hours_per_week,
        "recommended_nh": rec.recommended_node_hours_per_week,
        "savings_pct": None if rec.savings_fraction is None else rec.savings_fraction * 100,
        "versions": list(
            ScheduleVersion.objects.filter(pool=pool)
            .select_related("created_by")
            .prefetch_related("set_points")
            .order_by("-number")[:HISTORY_SHOWN]
        ),
    }


def _page(request: HttpRequest, form: CapacityForm, apply_errors: dict | None = None):
    context: dict = {"form": form, "plans": [], "apply_errors": apply_errors or {}}
    if not form.is_valid():
        return render(request, "staff/capacity.html", context, status=400)
    params = form.params()
    context["params"] = params
    context["plans"] = [
        _pool_plan(pool, params, pool.slug in (apply_errors or {}))
        for pool in NodePool.objects.order_by("slug")
    ]
    status = 400 if apply_errors else 200
    return render(request, "staff/capacity.html", context, status=status)


@staff_required
def capacity_page(request: HttpRequest) -> HttpResponse:
    return _page(request, CapacityForm(request.GET if request.GET else None))


@staff_required
@require_POST
def capacity_apply(request: HttpRequest, slug: str) -> HttpResponse:
    pool = get_object_or_404(NodePool, slug=slug)
    form = ApplyForm(request.POST)
    back = reverse("staff_costs:capacity")
    if not form.is_valid():
        return _page(request, CapacityForm(request.POST), {pool.slug: form.errors})
    params = form.params()
    try:
        rec = _recommend(pool, params)
        version = schedule_version_apply(
            pool=pool,
            set_points=rec.set_points,
            user=request.user,
            reason=form.cleaned_data["reason"],
            params={
                "weeks": params["weeks"],
                "percentile": str(params["percentile"]),
                "buffer": str(params["buffer"]),
                "min_nodes": params["min_nodes"],
                "end": params["end"].isoformat(),
                "fit": rec.fit,
                "recommended_cost_usd": str(rec.recommended_cost_usd),
                "current_cost_usd": str(rec.current_cost_usd),
            },
        )
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request, f"Pool {pool.slug}: schedule version {version.number} is now in force."
        )
    query = {
        "weeks": params["weeks"],
        "percentile": params["percentile"],
        "buffer": params["buffer"],
        "end": params["end"].isoformat(),
    }
    if params["min_nodes"] is not None:
        query["min_nodes"] = params["min_nodes"]
    return redirect(f"{back}?{urlencode(query)}#pool-{pool.slug}")
