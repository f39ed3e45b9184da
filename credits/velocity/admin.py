"""Velocity pauses in the admin: read-only, with an action to confirm (resume) — through
`credits.velocity.services.velocity_resume`, audited with the staff user."""

from __future__ import annotations

from django.contrib import admin, messages

from credits.velocity import services
from credits.velocity.models import VelocityPause


@admin.register(VelocityPause)
class VelocityPauseAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "paused_at",
        "last_hour_credits",
        "hourly_average",
        "confirmed_at",
        "confirmed_by",
        "exempt_until",
    )
    list_filter = (("paused_at", admin.EmptyFieldListFilter),)
    search_fields = ("organization__slug", "organization__name")
    list_select_related = ("organization", "confirmed_by")
    readonly_fields = list_display
    actions = ["resume"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Confirm the spend and resume paid generation")
    def resume(self, request, queryset):
        count = 0
        for state in queryset.select_related("organization"):
            services.velocity_resume(organization=state.organization, actor=request.user)
            count += 1
        self.message_user(request, f"Resumed {count} organization(s).", messages.SUCCESS)
