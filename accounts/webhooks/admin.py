"""Admin of outbound webhooks: endpoints (staff endpoints — no organization — are created here;
the secret is shown once, in the message after saving), and read-only events and deliveries
with their attempt log."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from accounts.webhooks import services
from accounts.webhooks.models import (
    ORGANIZATION_EVENT_TYPES,
    STAFF_EVENT_TYPES,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from accounts.webhooks.urls_check import url_validate
from config.errors import ServiceError
from config.web.admin import ReadOnlyMixin


class WebhookEndpointAdminForm(forms.ModelForm):
    url = forms.CharField(label="URL", max_length=2000)
    event_types = forms.MultipleChoiceField(
        choices=[(t.value, t.value) for t in EventType if t != EventType.TEST],
        widget=forms.CheckboxSelectMultiple,
        help_text="Organization endpoints: any but alert.opened; staff endpoints: alert.opened.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["organization", "url", "description", "event_types", "enabled"]

    def clean(self):
        cleaned = super().clean()
        staff = cleaned.get("organization") is None
        allowed = {str(t) for t in (STAFF_EVENT_TYPES if staff else ORGANIZATION_EVENT_TYPES)}
        if set(cleaned.get("event_types") or []) - allowed:
            self.add_error("event_types", f"Choose from: {', '.join(sorted(allowed))}.")
        return cleaned

    def clean_url(self):
        try:
            return url_validate(self.cleaned_data["url"])
        except ServiceError as exc:
            raise forms.ValidationError(exc.detail) from exc


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointAdminForm
    list_display = ["url", "organization", "enabled", "failure_streak", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "organization__slug"]
    raw_id_fields = ["organization"]
    readonly_fields = ["failure_streak", "failing_since", "disabled_at", "disabled_reason"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            endpoint, secret = services.webhook_endpoint_create(
                organization=obj.organization,
                url=obj.url,
                event_types=form.cleaned_data["event_types"],
                description=obj.description,
                actor=None if obj.organization_id else request.user,
            )
        except ServiceError as exc:  # the form checked the same: not expected
            messages.error(request, exc.detail)
            return
        obj.pk = endpoint.pk
        messages.warning(request, f"Signing secret (shown once): {secret}")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["number", "at", "status_code", "error", "duration_ms", "next_attempt_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["public_id", "type", "organization", "created_at"]
    list_filter = ["type"]
    search_fields = ["public_id", "organization__slug"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "event", "endpoint", "status", "attempts", "next_attempt_at"]
    list_filter = ["status"]
    search_fields = ["event__public_id", "endpoint__url"]
    list_select_related = ["event", "endpoint"]
    inlines = [WebhookAttemptInline]
