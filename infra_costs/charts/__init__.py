"""Geometry of the staff cost report's charts, drawn server-side as inline SVG (like the credits
usage chart: no JavaScript, no chart library). Each builder returns plain data in a fixed
viewBox; the templates (templates/staff/partials/) only place it. Text sizes are set by CSS per
screen width (static/css/app.css, "Staff reports") so labels stay legible on a phone, on a
desktop and in print; the layouts leave room for the largest size.

Numbers shown in charts are rounded for reading; the tables next to them have the exact ones.

One module per chart (`cost`, `daily`, `heat`, `idle`); `axes` holds the shared scale, tick
and short-number helpers.
"""

from infra_costs.charts.axes import usd_short
from infra_costs.charts.cost import cost_per_generation_chart
from infra_costs.charts.daily import daily_chart
from infra_costs.charts.heat import heatmap
from infra_costs.charts.idle import idle_chart

__all__ = ["cost_per_generation_chart", "daily_chart", "heatmap", "idle_chart", "usd_short"]
