"""Promo codes in the admin: staff create and edit codes (credits, grant expiry, validity
window, limits, active); redemptions are read-only (they are made only by
`credits.promos.services.promo_redeem`, with their grant)."""

from __future__ import annotations

from django.contrib import admin

from credits.promos.models import PromoCode, PromoRedemption


class PromoRedemptionInline(admin.TabularInline):
    model = PromoRedemption
    extra = 0
    fields = ("organization", "seq", "grant", "redeemed_by", "redeemed_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("-redeemed_at",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PromoCode)
class PromoCodeAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "credits",
        "active",
        "redemptions_count",
        "max_redemptions",
        "max_per_organization",
        "valid_from",
        "valid_until",
    )
    list_filter = ("active",)
    search_fields = ("code", "description")
    readonly_fields = ("redemptions_count", "created_by", "created_at")
    inlines = [PromoRedemptionInline]

    def get_readonly_fields(self, request, obj=None):
        # Credits and code are fixed once someone redeemed it (the grants name the code).
        if obj is not None and obj.redemptions_count:
            return (*self.readonly_fields, "code", "credits")
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return obj is None or not obj.redemptions_count

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
