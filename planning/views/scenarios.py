"""The scenario planner staff page, /staff/planning/scenarios/ (namespace `planning`).

- GET: the inputs form (defaults, or a saved scenario with `?load=<id>`, evaluated);
- POST `action=evaluate`: the outputs of the inputs, nothing saved; `action=save`: save them
  under a name (`services.scenario_create`, audited) and show the saved scenario;
- GET `compare/?ids=1&ids=2…`: 2–4 saved scenarios side by side, with a cost vs revenue chart.

Staff only (anonymous → login, others → 404), like the other staff pages. Bad input is shown
as form errors (status 400), never a 500; nothing is written.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from config.errors import NotFound, ValidationError
from config.web.decorators import staff_required
from config.web.forms import add_service_errors
from planning.scenarios import selectors, services
from planning.scenarios.chart import cost_revenue_chart
from planning.scenarios.forms import build_form

COMPARE_MIN, COMPARE_MAX = 2, 4
RECENT = 50


def _sensitivity_chart(outputs: dict):
    totals = outputs["totals"]
    rows = [("As entered", totals["total_cost_usd"], totals["revenue_usd"])]
    for r in outputs["sensitivity"]:
        sign = "−" if r["change"].startswith("-") else "+"
        pct = abs(Decimal(r["change"]) * 100).normalize()
        rows.append((f"{r['label']} {sign}{pct:f}%", r["total_cost_usd"], r["revenue_usd"]))
    return cost_revenue_chart(rows)


def _page(request, form, *, outputs=None, scenario=None, status=200) -> HttpResponse:
    context = {
        "form": form,
        "outputs": outputs,
        "scenario": scenario,
        "chart": _sensitivity_chart(outputs) if outputs else None,
        "saved": selectors.scenario_list()[:RECENT],
        "compare_url": reverse("planning:scenarios_compare"),
        "api_url": reverse("api-planning-scenario-evaluate"),
    }
    return render(request, "planning/scenarios.html", context, status=status)


@staff_required
@require_http_methods(["GET", "POST"])
def scenarios(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _post(request)
    load = request.GET.get("load")
    if load is None:
        return _page(request, build_form())
    try:
        scenario = selectors.scenario_get(scenario_id=int(load))
    except (ValueError, OverflowError, NotFound):
        messages.error(request, "No such saved scenario.")
        return _page(request, build_form(), status=404)
    form = build_form(inputs=scenario.inputs)
    form.initial["name"] = scenario.name
    try:
        outputs = selectors.scenario_evaluate(selectors.inputs_parse(scenario.inputs))
    except ValidationError as exc:  # it named a model or plan deleted since
        messages.error(request, f"This scenario can't be evaluated any more: {exc.detail}")
        outputs = None
    return _page(request, form, outputs=outputs, scenario=scenario)


def _post(request: HttpRequest) -> HttpResponse:
    form = build_form(request.POST)
    action = request.POST.get("action", "evaluate")
    if not form.is_valid():
        return _page(request, form, status=400)
    if action != "save":
        return _page(request, form, outputs=selectors.scenario_evaluate(form.inputs))
    try:
        scenario = services.scenario_create(
            name=form.cleaned_data.get("name") or "",
            inputs=form.inputs.as_json(),
            actor=request.user,
        )
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _page(request, form, outputs=selectors.scenario_evaluate(form.inputs), status=400)
    messages.success(request, f"Scenario “{scenario.name}” saved.")
    return redirect(f"{reverse('planning:scenarios')}?{urlencode({'load': scenario.pk})}")


class CompareForm(forms.Form):
    ids = forms.TypedMultipleChoiceField(coerce=int, choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ids"].choices = [
            (s.pk, s.name)
            for s in selectors.scenario_list().select_related(None).only("pk", "name")
        ]
        self.fields["ids"].error_messages["invalid_choice"] = "Pick saved scenarios from the list."

    def clean_ids(self):
        ids = list(dict.fromkeys(self.cleaned_data["ids"]))
        if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
            raise forms.ValidationError(
                f"Pick {COMPARE_MIN} to {COMPARE_MAX} scenarios to compare."
            )
        return ids


COMPARE_ROWS = (
    ("MAU", "mau", "int"),
    ("Paid users", "paid_users", "count"),
    ("Generations", "generations", "count"),
    ("GPU cost", "gpu_cost_usd", "usd"),
    ("External cost", "external_cost_usd", "usd"),
    ("Baseline", "baseline_usd", "usd"),
    ("Total cost", "total_cost_usd", "usd"),
    ("Revenue", "revenue_usd", "usd"),
    ("Gross margin", "gross_margin_usd", "usd"),
    ("Gross margin %", "gross_margin_fraction", "pct"),
    ("Break-even MAU", "break_even_mau", "int"),
    ("Break-even paid users", "break_even_paid_users", "int"),
)


@staff_required
@require_http_methods(["GET"])
def scenarios_compare(request: HttpRequest) -> HttpResponse:
    form = CompareForm(request.GET)
    context: dict = {"form": form, "columns": [], "rows": [], "chart": None}
    if not form.is_valid():
        return render(request, "planning/scenarios_compare.html", context, status=400)
    found = {s.pk: s for s in selectors.scenario_list().filter(pk__in=form.cleaned_data["ids"])}
    chosen = [found[i] for i in form.cleaned_data["ids"] if i in found]
    cache: dict = {}
    columns = []
    for scenario in chosen:
        try:
            outputs = selectors.scenario_evaluate(
                selectors.inputs_parse(scenario.inputs), costs_cache=cache
            )
        except ValidationError as exc:
            columns.append({"scenario": scenario, "outputs": None, "error": exc.detail})
            continue
        columns.append({"scenario": scenario, "outputs": outputs, "error": None})
    rows = []
    for label, key, kind in COMPARE_ROWS:
        cells = []
        for col in columns:
            out = col["outputs"]
            if out is None:
                cells.append(None)
            elif key == "mau":
                cells.append(out["inputs"]["mau"])
            else:
                cells.append(out["totals"][key])
        rows.append({"label": label, "key": key, "kind": kind, "cells": cells})
    context.update(
        {
            "columns": columns,
            "rows": rows,
            "chart": cost_revenue_chart(
                (
                    c["scenario"].name,
                    c["outputs"]["totals"]["total_cost_usd"],
                    c["outputs"]["totals"]["revenue_usd"],
                )
                for c in columns
                if c["outputs"] is not None
            ),
        }
    )
    return render(request, "planning/scenarios_compare.html", context)
