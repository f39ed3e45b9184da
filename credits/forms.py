"""The Django admin's manual credit adjustment form (the change itself goes through
`credits.services.account_adjust`)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms

from credits.money import CREDIT_PLACES, MAX_CREDITS


class AccountAdjustmentForm(forms.Form):
    """Amount (negative takes credits away), a required reason, and a one-time token.

    The token is generated when the form is first shown and carried in a hidden field: it
    becomes the adjustment's idempotency key, so submitting the same form twice (a double
    click, a browser resubmit) moves credits once.
    """

    amount = forms.DecimalField(
        max_digits=18,
        decimal_places=CREDIT_PLACES,
        max_value=MAX_CREDITS,
        min_value=-MAX_CREDITS,
        help_text=(
            f"Credits to add (e.g. 25) or take away (e.g. -10.5), at most {CREDIT_PLACES} "
            "decimal places. A negative adjustment is never refused: what the grants don't "
            "cover makes the balance negative."
        ),
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    reason = forms.CharField(
        max_length=500,
        strip=True,
        help_text="Why (shown in the customer's ledger and kept in the audit log).",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    token = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("token", uuid.uuid4())
        super().__init__(*args, **kwargs)

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Must not be zero.")
        return amount

    def idempotency_key(self) -> str:
        return f"admin-adjust:{self.cleaned_data['token']}"
