"""Form helpers shared by the apps' web forms."""

from __future__ import annotations

from django import forms

from config import dates
from config.errors import ServiceError


class DateField(forms.DateField):
    """A date within `config.dates`' range: one far off is a form error, not an overflow later."""

    def validate(self, value):
        super().validate(value)
        if value is not None and not dates.in_range(value):
            raise forms.ValidationError(dates.OUT_OF_RANGE, code="out_of_range")


def add_service_errors(form: forms.Form, exc: ServiceError, field_map: dict | None = None) -> None:
    """Show a service's ValidationError on the form, next to the field it concerns.

    Services keep per-field messages terse ("Required.") and put the sentence a user should
    read in `detail`; with a single field concerned, that sentence is shown next to it."""
    field_map = field_map or {}
    fields = {field_map.get(key, key): msgs for key, msgs in (exc.errors or {}).items()}
    fields = {name: msgs for name, msgs in fields.items() if name in form.fields}
    if len(fields) == 1:
        form.add_error(next(iter(fields)), exc.detail)
    elif fields:
        for name, messages in fields.items():
            for message in messages:
                form.add_error(name, message)
    else:
        form.add_error(None, exc.detail)
