"""The scenario planner page's form: the inputs as fields people fill in (one share field per
active model and per paid plan, a cost override per model, the baseline as lines of
"name, monthly USD"), validated by the same rules as the API (`inputs.parse_inputs`)."""

from __future__ import annotations

from typing import Any

from django import forms

from config.errors import ValidationError
from config.web.forms import DateField
from planning.scenarios import selectors
from planning.scenarios.inputs import BASELINE_MAX_ITEMS, ScenarioInputs

DEFAULT_PLAN_MIX = {"starter": "60", "creator": "30", "studio": "10"}
DEFAULT_BASELINE = "Database, 250\nStorage, 120\nCDN, 80\nMonitoring, 50"
GROUPS = ("model_mix", "plan_mix", "cost_overrides")


def _number(label: str, *, help_text: str = "", required: bool = True, mode: str = "decimal"):
    return forms.CharField(
        label=label,
        required=required,
        max_length=40,
        help_text=help_text,
        widget=forms.TextInput(attrs={"inputmode": mode, "autocomplete": "off"}),
    )


class ScenarioForm(forms.Form):
    mau = _number("Monthly active users", mode="numeric")
    generations_per_user = _number("Generations per user per month")
    cache_hit_pct = _number(
        "Cache hit rate (%)", required=False, help_text="Served from cache: no GPU cost."
    )
    conversion_pct = _number("Conversion to paid (%)")
    baseline = forms.CharField(
        label="Baseline infrastructure",
        required=False,
        max_length=4000,
        help_text=f"One line per item: name, monthly USD (at most {BASELINE_MAX_ITEMS}).",
        widget=forms.Textarea(attrs={"rows": 5}),
    )
    costs_start = DateField(
        label="Costs measured from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    costs_end = DateField(
        label="to (exclusive)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    name = forms.CharField(label="Name", required=False, max_length=100)

    def __init__(self, *args, models: list[str], plans: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.models = models
        self.plans = plans
        self.group_errors: dict[str, list[str]] = {}
        self.inputs: ScenarioInputs | None = None
        for slug in models:
            self.fields[f"mix__{slug}"] = _number(f"{slug} (%)", required=False)
            self.fields[f"cost__{slug}"] = _number(
                f"{slug} cost override (USD/gen.)", required=False
            )
        for plan in plans:
            self.fields[f"plan__{plan.slug}"] = _number(
                f"{plan.name} (${plan.monthly_price_usd:,.2f}/month)", required=False
            )

    # Field groups, for the template.
    def model_rows(self):
        return [(slug, self[f"mix__{slug}"], self[f"cost__{slug}"]) for slug in self.models]

    def plan_fields(self):
        return [self[f"plan__{p.slug}"] for p in self.plans]

    def _baseline_items(self, text: str) -> list[dict[str, str]]:
        items = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, amount = line.rpartition(",")
            if not sep:
                raise forms.ValidationError(f"Line {n}: write “name, monthly USD”.")
            amount = amount.strip().removeprefix("$").replace("_", "").strip()
            items.append({"name": name.strip(), "monthly_usd": amount, "line": n})
        return items

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            baseline = self._baseline_items(data.get("baseline") or "")
        except forms.ValidationError as exc:
            self.add_error("baseline", exc)
            return data
        lines = [item.pop("line") for item in baseline]
        raw: dict[str, Any] = {
            "mau": data.get("mau"),
            "generations_per_user": data.get("generations_per_user"),
            "cache_hit_pct": data.get("cache_hit_pct") or "0",
            "conversion_pct": data.get("conversion_pct"),
            "model_mix": {
                s: data[f"mix__{s}"] for s in self.models if data.get(f"mix__{s}") not in ("", None)
            },
            "plan_mix": {
                p.slug: data[f"plan__{p.slug}"]
                for p in self.plans
                if data.get(f"plan__{p.slug}") not in ("", None)
            },
            "baseline": baseline,
            "cost_overrides": {
                s: data[f"cost__{s}"]
                for s in self.models
                if data.get(f"cost__{s}") not in ("", None)
            },
            "costs_start": data.get("costs_start"),
            "costs_end": data.get("costs_end"),
        }
        try:
            self.inputs = selectors.inputs_parse(raw)
        except ValidationError as exc:
            self._show(exc, lines)
        return data

    def _show(self, exc: ValidationError, lines: list[int]) -> None:
        for key, messages in (exc.errors or {}).items():
            if key in GROUPS:
                self.group_errors.setdefault(key, []).extend(messages)
            elif key.startswith("baseline"):
                parts = key.split(".")
                where = f"Line {lines[int(parts[1])]}: " if len(parts) > 1 else ""
                for m in messages:
                    self.add_error("baseline", f"{where}{m}")
            elif key in self.fields:
                for m in messages:
                    self.add_error(key, m)
            else:
                for m in messages:
                    self.add_error(None, m)
        if self.group_errors and not self.errors:
            self.add_error(None, "Check the shares below.")


def initial_from(inputs: dict | None, *, models: list[str], plans: list) -> dict[str, Any]:
    """Initial values of the form: a saved scenario's inputs, or sensible defaults."""
    if inputs is None:
        initial: dict[str, Any] = {
            "mau": "10000",
            "generations_per_user": "40",
            "cache_hit_pct": "0",
            "conversion_pct": "5",
            "baseline": DEFAULT_BASELINE,
        }
        if models:
            initial[f"mix__{models[0]}"] = "100"
        slugs = [p.slug for p in plans]
        if set(DEFAULT_PLAN_MIX) <= set(slugs):
            initial.update({f"plan__{k}": v for k, v in DEFAULT_PLAN_MIX.items()})
        elif slugs:
            initial[f"plan__{slugs[0]}"] = "100"
        return initial
    initial = {
        "mau": str(inputs.get("mau", "")),
        "generations_per_user": inputs.get("generations_per_user", ""),
        "cache_hit_pct": inputs.get("cache_hit_pct", "0"),
        "conversion_pct": inputs.get("conversion_pct", ""),
        "baseline": "\n".join(
            f"{b['name']}, {b['monthly_usd']}" for b in inputs.get("baseline", [])
        ),
        "costs_start": inputs.get("costs_start"),
        "costs_end": inputs.get("costs_end"),
    }
    for slug, share in inputs.get("model_mix", {}).items():
        initial[f"mix__{slug}"] = share
    for slug, cost in inputs.get("cost_overrides", {}).items():
        initial[f"cost__{slug}"] = cost
    for slug, share in inputs.get("plan_mix", {}).items():
        initial[f"plan__{slug}"] = share
    return initial


def build_form(data=None, *, inputs: dict | None = None) -> ScenarioForm:
    """The form over today's active models (plus any a loaded scenario names) and paid plans."""
    models = selectors.models_for_form()
    if inputs is not None:
        models += [s for s in inputs.get("model_mix", {}) if s not in models]
    plans = selectors.plans_paid()
    if data is not None:
        return ScenarioForm(data, models=models, plans=plans)
    return ScenarioForm(
        initial=initial_from(inputs, models=models, plans=plans), models=models, plans=plans
    )
