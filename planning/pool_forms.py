"""The GET form of the pool economics page: period, pool, demand to plan for, and the costs of
owning a node. Every field has a default (blank = default), bounds and a short message: bad
input is a form error, never a server error."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from planning.pool_economics import DEFAULT_DAYS, MAX_DAYS

# Defaults of the rent-vs-buy inputs (per node): a one-GPU data-centre server, list prices.
OWN_DEFAULTS = {
    "cards_usd": Decimal("15000"),
    "server_usd": Decimal("9000"),
    "depreciation_months": 36,
    "power_kw": Decimal("1.0"),
    "power_usd_per_kwh": Decimal("0.15"),
    "hosting_usd_month": Decimal("200"),
}
MAX_USD = Decimal("100000000")  # per node: far above any real price
MAX_DEMAND = Decimal("1000000")  # generations per hour


def _money(label: str, help_text: str, *, max_value: Decimal = MAX_USD, places: int = 2):
    return forms.DecimalField(
        label=label,
        help_text=help_text,
        min_value=Decimal(0),
        max_value=max_value,
        max_digits=16,
        decimal_places=places,
        error_messages={
            "invalid": "Enter a number.",
            "max_digits": "Too many digits.",
            "max_decimal_places": f"At most {places} decimal places.",
            "max_whole_digits": "Too large.",
        },
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )


class PoolEconomicsForm(forms.Form):
    days = forms.IntegerField(
        label="Measured days",
        min_value=1,
        max_value=MAX_DAYS,
        help_text="Complete days before today (UTC).",
        error_messages={"invalid": "Enter a whole number of days."},
    )
    pool = forms.ChoiceField(label="Pool", choices=())
    demand = forms.DecimalField(
        label="Demand (gen./hour)",
        required=False,
        min_value=Decimal(0),
        max_value=MAX_DEMAND,
        max_digits=12,
        decimal_places=3,
        help_text="Blank: the measured peak hour.",
        error_messages={
            "invalid": "Enter a number.",
            "max_digits": "Too many digits.",
            "max_decimal_places": "At most 3 decimal places.",
            "max_whole_digits": "Too large.",
        },
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    cards_usd = _money("GPU cards per node ($)", "Purchase price of one node's GPUs.")
    server_usd = _money("Server per node ($)", "Chassis, CPU, memory, network.")
    depreciation_months = forms.IntegerField(
        label="Depreciation (months)",
        min_value=1,
        max_value=120,
        error_messages={"invalid": "Enter a whole number of months."},
    )
    power_kw = _money("Power per node (kW)", "Drawn all month.", max_value=Decimal(1000), places=3)
    power_usd_per_kwh = _money("Power price ($/kWh)", "", max_value=Decimal(100), places=4)
    hosting_usd_month = _money("Hosting per node ($/month)", "Rack space, colocation.")
    nodes = forms.IntegerField(
        label="Nodes to own",
        required=False,
        min_value=1,
        max_value=10_000,
        help_text="Blank: the nodes the pool ran in the period.",
        error_messages={"invalid": "Enter a whole number of nodes."},
    )

    def __init__(self, data=None, *, pools: list[str], **kwargs):
        merged = {"days": DEFAULT_DAYS, "pool": pools[0] if pools else "", **OWN_DEFAULTS}
        if data:
            merged.update({k: v for k, v in data.items() if k in self.base_fields and v != ""})
        # NUL characters are refused, and not echoed back into the page.
        self._with_nul = {k for k, v in merged.items() if isinstance(v, str) and "\x00" in v}
        for k in self._with_nul:
            merged[k] = merged[k].replace("\x00", "")
        super().__init__(merged, **kwargs)
        self.fields["pool"].choices = [(slug, slug) for slug in pools]
        self.fields["pool"].error_messages["invalid_choice"] = "Choose one of the pools."

    PLAN_FIELDS = ("days", "pool", "demand")

    def clean(self):
        cleaned = super().clean()
        for name in self._with_nul:
            if name not in self.errors:
                self.add_error(name, "Remove the control characters.")
        return cleaned

    @property
    def plan_fields(self):
        return [self[name] for name in self.PLAN_FIELDS]

    @property
    def own_fields(self):
        return [self[name] for name in self.fields if name not in self.PLAN_FIELDS]
