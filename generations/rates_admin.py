"""Admin for price versions (`CreditRate`): flat prices and price tables, added through
`generations.services.rate_set` (who, when, why; audit event), never edited or deleted; and the
checks shared with the model's "New price" (its parsing, the 10× confirmation).

A price table is checked by `price_tables.price_table_errors` — against the model's params
schema — and shown as form errors (a list of reasons), never a 500.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AdminSplitDateTime
from django.utils import timezone

from config.errors import ServiceError
from credits.money import parse_credits
from generations import selectors, services
from generations.models import AIModel, CreditRate
from generations.price_tables import price_table_errors


def _clean_price(value):
    """The service's own parsing of a credit amount, as a form error."""
    if value in (None, ""):
        return None
    try:
        return parse_credits(value, field="credits")
    except ServiceError as exc:
        raise forms.ValidationError(exc.detail) from None


LARGE_CHANGE_FACTOR = Decimal(10)  # a new price this many times higher or lower asks to confirm


def _large_change(current: Decimal | None, new: Decimal | None) -> bool:
    """The new price is more than 10× the current one, or less than a tenth of it (a slipped
    decimal point: 5 → 50 or 5 → 0.5)."""
    if current is None or new is None or current <= 0 or new <= 0:
        return False
    return new > current * LARGE_CHANGE_FACTOR or new * LARGE_CHANGE_FACTOR < current


def _confirm_large_change(form: forms.Form, *, model: AIModel | None, price, when=None) -> None:
    """Refuse a change of more than 10× unless its confirmation box is ticked (the form comes
    back with the box and the old and new prices, by the model's name)."""
    if model is None or model.pk is None or price is None:
        return
    rate = selectors.rate_current(model=model, now=when)
    current = rate.credits if rate is not None else None
    if not _large_change(current, price) or form.cleaned_data.get("confirm_large_change"):
        return
    factor = price / current if price > current else current / price
    direction = "higher" if price > current else "lower"
    form.add_error(
        "confirm_large_change",
        f"{model.name}: {price.normalize():f} credits is {factor.quantize(Decimal('0.1')):f}× "
        f"{direction} than the current {current.normalize():f}. Tick the box to confirm this "
        "price, or correct it.",
    )


CONFIRM_HELP = (
    "Needed when the new price is more than 10× the current one or less than a tenth of it "
    "(a slipped decimal point is the usual cause)."
)


class CreditRateAddForm(forms.ModelForm):
    confirm_large_change = forms.BooleanField(
        label="Yes, change the price by more than 10×", required=False, help_text=CONFIRM_HELP
    )
    effective_from = forms.SplitDateTimeField(
        required=False,
        widget=AdminSplitDateTime,
        help_text="When the price starts; empty: now. Past dates are refused (history is "
        "never rewritten).",
    )

    class Meta:
        model = CreditRate
        fields = ("model", "credits", "price_table", "reason", "effective_from")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "credits" in self.fields:
            self.fields["credits"].required = False
            self.fields["credits"].help_text = (
                "The price per generation. Leave empty with a price table: its reference "
                "price (every param at its default) is computed."
            )

    def clean_credits(self):
        return _clean_price(self.cleaned_data.get("credits"))

    def clean_price_table(self):
        table = self.cleaned_data.get("price_table")
        if table in (None, "", {}):
            return None
        errors = price_table_errors(table)
        if errors:
            raise forms.ValidationError(errors)
        return table

    def clean_effective_from(self):
        value = self.cleaned_data.get("effective_from")
        if value is not None and value < timezone.now():
            raise forms.ValidationError("Must not be in the past.")
        return value

    def clean(self):
        cleaned = super().clean()
        table, model = cleaned.get("price_table"), cleaned.get("model")
        if table is not None and model is not None and "price_table" not in self.errors:
            # Against the model's params schema: the service's own check, as form errors.
            errors = price_table_errors(table, params_schema=model.params_schema)
            if errors:
                self.add_error("price_table", errors)
            elif cleaned.get("credits") is not None:
                self.add_error("credits", "Leave empty with a price table (it is computed).")
        elif table is None and cleaned.get("credits") is None and "credits" not in self.errors:
            self.add_error("credits", "Give a price, or a price table.")
        if "credits" not in self.errors and "effective_from" not in self.errors:
            _confirm_large_change(
                self,
                model=model,
                price=cleaned.get("credits"),
                when=cleaned.get("effective_from"),
            )
        return cleaned


@admin.register(CreditRate)
class CreditRateAdmin(admin.ModelAdmin):
    """Price versions: read-only once created. Adding one goes through `services.rate_set`."""

    form = CreditRateAddForm
    list_display = (
        "model",
        "credits",
        "follows_request",
        "effective_from",
        "set_by",
        "reason",
        "created_at",
    )
    list_filter = ("model",)
    search_fields = ("model__slug", "model__name", "reason", "set_by__email")
    list_select_related = ("model", "set_by")
    date_hierarchy = "effective_from"
    ordering = ("model__slug", "-effective_from")
    autocomplete_fields = ("model",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return (
                "model",
                "credits",
                "price_table",
                "reason",
                "effective_from",
                "confirm_large_change",
            )
        return (
            "model",
            "credits",
            "price_table",
            "effective_from",
            "set_by",
            "reason",
            "created_at",
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="price table", boolean=True)
    def follows_request(self, obj: CreditRate) -> bool:
        return bool(obj.price_table)

    def save_model(self, request, obj, form, change):
        if change:  # unreachable: there is no change permission
            raise PermissionError("Credit rates are never edited.")
        rate = services.rate_set(
            model=obj.model,
            credits=form.cleaned_data["credits"],
            price_table=form.cleaned_data.get("price_table"),
            reason=form.cleaned_data["reason"],
            actor=request.user,
            effective_from=form.cleaned_data.get("effective_from"),
        )
        # The admin logs and redirects with `obj`: make it the version just created.
        obj.pk = rate.pk
        obj.credits = rate.credits
        obj.effective_from = rate.effective_from
        obj.set_by = rate.set_by
        obj.created_at = rate.created_at
