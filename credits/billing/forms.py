"""Forms of the billing page: auto top-up and low-balance alert settings (initial values from
the organization's current settings)."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from credits.billing import selectors as billing_selectors
from credits.billing.models import CreditPack
from credits.money import CREDIT_PLACES, MAX_CREDITS

DEFAULT_THRESHOLD = Decimal(100)


def _threshold_field(label: str, help_text: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        help_text=help_text,
        min_value=Decimal(0),
        max_value=MAX_CREDITS,
        max_digits=18,
        decimal_places=CREDIT_PLACES,
        error_messages={
            "invalid": "Enter a number of credits, e.g. 250.",
            "min_value": "Must be zero or more.",
            "max_decimal_places": f"At most {CREDIT_PLACES} decimal places.",
        },
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )


def _plain(value: Decimal) -> str:
    """A credit amount for an input field: "200", "250.5" (never "2E+2")."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class PackChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: CreditPack) -> str:
        return f"{obj.name} — ${obj.price_usd:,.2f}"


class AutoTopUpForm(forms.Form):
    prefix = "topup"

    enabled = forms.BooleanField(
        required=False,
        label="Buy credits automatically",
        widget=forms.CheckboxInput(attrs={"role": "switch"}),
    )
    threshold_credits = _threshold_field(
        "When available credits fall below",
        "Checked every minute; at most one purchase each time the balance drops below it.",
    )
    pack = PackChoiceField(
        queryset=CreditPack.objects.none(),
        empty_label=None,
        label="Buy this pack",
        to_field_name="slug",
        error_messages={"invalid_choice": "Choose one of the packs on offer."},
    )

    monthly_cap_credits = forms.DecimalField(
        required=False,
        label="At most this many credits a month",
        help_text="Empty: no cap. When a purchase would pass it, auto top-up waits for next "
        "month and the owners get one email.",
        min_value=Decimal("0.001"),
        max_value=MAX_CREDITS,
        max_digits=18,
        decimal_places=CREDIT_PLACES,
        error_messages={
            "invalid": "Enter a number of credits, e.g. 5000.",
            "min_value": "Must be more than zero.",
            "max_decimal_places": f"At most {CREDIT_PLACES} decimal places.",
        },
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    max_per_month = forms.IntegerField(
        required=False,
        label="At most this many purchases a month",
        help_text="Empty: no limit.",
        min_value=1,
        max_value=1000,
        error_messages={"invalid": "Enter a whole number, e.g. 10."},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pack"].queryset = billing_selectors.packs_for_sale()


class LowBalanceForm(forms.Form):
    prefix = "alert"

    enabled = forms.BooleanField(
        required=False,
        label="Email the owners when credits run low",
        widget=forms.CheckboxInput(attrs={"role": "switch"}),
    )
    threshold_credits = _threshold_field(
        "When available credits fall below",
        "One email each time the balance drops below it.",
    )


def topup_form_initial(status) -> AutoTopUpForm:
    config = status.auto_top_up
    if config is not None:
        initial = {
            "enabled": config.enabled,
            "threshold_credits": _plain(config.threshold_credits),
            "pack": config.pack.slug,
            "monthly_cap_credits": (
                _plain(config.monthly_cap_credits) if config.monthly_cap_credits else ""
            ),
            "max_per_month": config.max_per_month,
        }
    else:
        first = billing_selectors.packs_for_sale().first()
        initial = {
            "enabled": False,
            "threshold_credits": _plain(DEFAULT_THRESHOLD),
            "pack": first.slug if first else None,
            "max_per_month": 10,
        }
    return AutoTopUpForm(initial=initial)


def alert_form_initial(status) -> LowBalanceForm:
    alert = status.low_balance_alert
    if alert is not None:
        initial = {
            "enabled": alert.enabled,
            "threshold_credits": _plain(alert.threshold_credits),
        }
    else:
        initial = {"enabled": False, "threshold_credits": _plain(DEFAULT_THRESHOLD)}
    return LowBalanceForm(initial=initial)
