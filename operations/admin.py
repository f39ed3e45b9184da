"""Admin of alerting: the five rules with their thresholds (editable, validated by
`AlertRule.clean`: warning and critical in the right order for the rule's direction), and the
alerts they opened (read-only: the evaluation opens and resolves them)."""

from __future__ import annotations

from django.contrib import admin

from config.web.admin import ReadOnlyMixin
from operations.models import Alert, AlertRule


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
