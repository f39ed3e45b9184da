"""Budgets in the admin: read their use, change the limit, period and alert (through
`credits.budgets.services`, audited with the staff user), delete them. Use (`used`,
`reserved`) moves only with holds, never by hand."""

from __future__ import annotations

from django.contrib import admin

from credits.budgets import services
from credits.budgets.models import Budget, HoldBudget
from credits.budgets.selectors import budget_use


class HoldBudgetInline(admin.TabularInline):
    model = HoldBudget
    extra = 0
    fields = ("hold", "amount", "captured", "created_at", "resolved_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("limit_name", "organization", "period", "amount", "current_use", "reserved")
    list_filter = ("scope", "period")
    search_fields = ("organization__slug", "team__slug", "api_key__prefix", "user__email")
    list_select_related = ("organization", "team", "api_key", "user")
    fields = (
        "organization",
        "scope",
        "user",
        "team",
        "api_key",
        "period",
        "amount",
        "alert_percent",
        "used",
        "reserved",
        "window_start",
        "alerted_window",
        "created_by",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "organization",
        "scope",
        "user",
        "team",
        "api_key",
        "used",
        "reserved",
        "window_start",
        "alerted_window",
        "created_by",
        "created_at",
        "updated_at",
    )
    inlines = [HoldBudgetInline]

    @admin.display(description="Used this period")
    def current_use(self, obj: Budget):
        return budget_use(budget=obj).used

    def has_add_permission(self, request) -> bool:
        return False  # owners and admins add budgets on the budgets page or the API

    def save_model(self, request, obj, form, change):
        services.budget_update(
            budget=obj,
            actor=request.user,
            amount=obj.amount,
            period=obj.period,
            alert_percent=obj.alert_percent,
            as_staff=True,
        )

    def delete_model(self, request, obj):
        services.budget_delete(budget=obj, actor=request.user, as_staff=True)

    def delete_queryset(self, request, queryset):
        for budget in queryset:
            services.budget_delete(budget=budget, actor=request.user, as_staff=True)
