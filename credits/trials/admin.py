"""Free trials and referrals in the admin: staff create and edit `PlanTrial`s (plan, days,
credits, active); organizations' trials, referral codes and referrals are read-only (made only
by `credits.trials.services` and `credits.trials.referrals`, with their grants)."""

from __future__ import annotations

from django.contrib import admin

from credits.trials.models import OrganizationTrial, PlanTrial, Referral, ReferralCode


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PlanTrial)
class PlanTrialAdmin(admin.ModelAdmin):
    list_display = ("plan", "days", "credits", "active", "created_at")
    list_filter = ("active",)
    fields = ("plan", "days", "credits", "active")


@admin.register(OrganizationTrial)
class OrganizationTrialAdmin(ReadOnlyAdmin):
    list_display = ("organization", "plan_trial", "started_at", "ends_at", "ended_at")
    list_filter = ("plan_trial",)
    search_fields = ("organization__name", "organization__slug")
    list_select_related = ("organization", "plan_trial__plan")


@admin.register(ReferralCode)
class ReferralCodeAdmin(ReadOnlyAdmin):
    list_display = ("code", "organization", "created_at")
    search_fields = ("code", "organization__name", "organization__slug")
    list_select_related = ("organization",)


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    list_display = ("referrer", "referred", "created_at")
    search_fields = ("referrer__name", "referred__name")
    list_select_related = ("referrer", "referred")
