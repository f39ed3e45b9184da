"""Admin of alerting: the five rules with their thresholds (editable, validated by
`AlertRule.clean`: warning and critical in the right order for the rule's direction), and the
alerts they opened (read-only: the evaluation opens and resolves them)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from accounts.models import User
from config.errors import ServiceError
from config.web.admin import ReadOnlyMixin
from operations.models import Alert, AlertRule, StaffAPIToken
from operations.tokens import services as token_services
from operations.tokens.selectors import STAFF_TOKEN_PREFIX


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "key",
        "enabled",
        "warning_threshold",
        "critical_threshold",
        "warning_window_s",
        "critical_window_s",
        "unit",
    )
    list_editable = ("enabled",)
    readonly_fields = ("key", "unit", "updated_at")
    fields = (
        "key",
        "name",
        "description",
        "enabled",
        "unit",
        "warning_threshold",
        "critical_threshold",
        "warning_window_s",
        "critical_window_s",
        "updated_at",
    )

    @admin.display(description="Unit")
    def unit(self, obj: AlertRule) -> str:
        return obj.unit

    def has_add_permission(self, request) -> bool:
        return False  # the five rules are fixed (seeded by a migration); only tuned here

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "message",
        "severity",
        "state",
        "rule",
        "subject",
        "value",
        "opened_at",
        "last_seen_at",
        "resolved_at",
        "notified_at",
    )
    list_filter = ("state", "severity", "rule")
    search_fields = ("subject", "message")
    date_hierarchy = "opened_at"
    list_select_related = ("rule",)
    ordering = ("-opened_at", "-id")


class StaffAPITokenAddForm(forms.ModelForm):
    user = forms.ModelChoiceField(
        queryset=User.objects.filter(is_staff=True, is_active=True).order_by("email"),
        help_text="The token acts as this staff user.",
    )

    class Meta:
        model = StaffAPIToken
        fields = ("user", "name")


@admin.register(StaffAPIToken)
class StaffAPITokenAdmin(admin.ModelAdmin):
    """Created here (the token is shown once, in the confirmation message) or with
    `manage.py staff_token create`; revoked, never deleted (audit events point at tokens)."""

    list_display = (
        "name",
        "masked_token",
        "user",
        "is_active",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("created_at", "last_used_at", "revoked_at")
    search_fields = ("prefix", "name", "user__email")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "name",
        "masked_token",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    fields = readonly_fields
    actions = ("revoke_selected",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = StaffAPITokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("user", "name") if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        if change:  # pragma: no cover - every field is read-only once created
            return
        try:
            token, raw = token_services.staff_token_create(
                user=form.cleaned_data["user"], name=form.cleaned_data["name"], actor=request.user
            )
        except ServiceError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return
        obj.pk = token.pk
        obj.prefix = token.prefix
        self.message_user(
            request,
            f"Token created. Copy it now, it is not shown again: {raw}",
            messages.WARNING,
        )

    @admin.display(description="token")
    def masked_token(self, obj: StaffAPIToken) -> str:
        return f"{STAFF_TOKEN_PREFIX}{obj.prefix}_…" if obj.prefix else ""

    @admin.display(description="active", boolean=True)
    def is_active(self, obj: StaffAPIToken) -> bool:
        return obj.is_active

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_services.staff_token_revoke(token=token, actor=request.user)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
