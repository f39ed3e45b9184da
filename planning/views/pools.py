"""Staff page /staff/planning/pools/: per pool, utilization → cost per generation and when a
second node is needed; for the chosen pool, rent vs buy. Reads only (a GET form); the numbers
come from `planning.pool_economics`, the chart geometry from `planning.pool_charts`."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from config.web.decorators import staff_required
from infra_costs.forms import today_utc
from infra_costs.models import NodePool
from planning import pool_charts
from planning.pool_economics import (
    HOURS_PER_MONTH,
    SLA_PERCENTILE,
    UTILIZATION_LEVELS,
    OwnInputs,
    default_owned_nodes,
    period_bounds,
    pool_economics,
    pool_rent_vs_buy,
)
from planning.pool_forms import PoolEconomicsForm


@staff_required
def pools(request: HttpRequest) -> HttpResponse:
    slugs = list(NodePool.objects.order_by("slug").values_list("slug", flat=True))
    form = PoolEconomicsForm(request.GET, pools=slugs)
    context: dict = {
        "form": form,
        "levels": UTILIZATION_LEVELS,
        "percentile": int(SLA_PERCENTILE * 100),
        "hours_per_month": HOURS_PER_MONTH,
    }
    if not slugs:
        return render(request, "planning/pools.html", context)
    if not form.is_valid():
        return render(request, "planning/pools.html", context, status=400)
    data = form.cleaned_data
    start, end = period_bounds(days=data["days"], today=today_utc())
    chosen = data["pool"]
    demand = {chosen: data["demand"]} if data["demand"] is not None else {}
    economics = pool_economics(start=start, end=end, demand=demand, now=timezone.now())
    econ = next(e for e in economics if e.pool.slug == chosen)
    nodes = data["nodes"] or default_owned_nodes(econ)
    rb = pool_rent_vs_buy(
        econ,
        OwnInputs(
            cards_usd=data["cards_usd"],
            server_usd=data["server_usd"],
            depreciation_months=data["depreciation_months"],
            power_kw=data["power_kw"],
            power_usd_per_kwh=data["power_usd_per_kwh"],
            hosting_usd_month=data["hosting_usd_month"],
            nodes=nodes,
        ),
    )
    query = request.GET.copy()
    query.pop("demand", None)  # a demand typed for one pool is not another's
    pool_rows = []
    for e in economics:
        query["pool"] = e.pool.slug
        pool_rows.append((e, f"?{query.urlencode()}"))
    context.update(
        {
            "start": start,
            "end": end,
            "economics": economics,
            "econ": econ,
            "pool_rows": pool_rows,
            "nodes_default": data["nodes"] is None,
            "rb": rb,
            "cost_chart": pool_charts.cost_curve_chart(econ),
            "rb_chart": pool_charts.rent_buy_chart(econ, rb),
        }
    )
    return render(request, "planning/pools.html", context)
