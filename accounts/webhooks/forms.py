from django import forms

from accounts.webhooks.models import ORGANIZATION_EVENT_TYPES


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=2000,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/webhooks/gpu-credits"}),
        help_text="Where we POST the events",
    )
    description = forms.CharField(max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=[(t.value, f"{t.value} — {t.label}") for t in ORGANIZATION_EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
    )
