"""Admin for meters: a meter (slug, unit), its price per unit in versions (who, when, why —
through `services.meter_rate_set`, never edited), and the usage events recorded (read-only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from config.errors import ServiceError
from config.web.admin import ReadOnlyMixin
from generations.metering import services
from generations.metering.models import Meter, MeterRate, UsageEvent


class MeterRateInline(ReadOnlyMixin, admin.TabularInline):
    model = MeterRate
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("credits_per_unit", "effective_from", "set_by", "reason", "created_at")
    readonly_fields = fields
    ordering = ("-effective_from",)
    verbose_name = "price version"
    verbose_name_plural = "price history"


class MeterAdminForm(forms.ModelForm):
    new_price = forms.DecimalField(
        label="New price (credits per unit)",
        required=False,
        max_digits=24,
        decimal_places=6,
        help_text="Set to change the price: a new version starts now. Empty: keep it.",
    )
    price_reason = forms.CharField(
        label="Reason for the price change", required=False, max_length=255, strip=True
    )

    class Meta:
        model = Meter
        fields = ("slug", "name", "unit", "description", "is_active")

    def clean(self):
        cleaned = super().clean()
        price = cleaned.get("new_price")
        if price is not None and price <= 0:
            self.add_error("new_price", "Must be above 0.")
        if price is not None and not cleaned.get("price_reason"):
            self.add_error("price_reason", "Say why the price changes.")
        if price is None and self.instance.pk is None:
            self.add_error("new_price", "A new meter needs a price.")
        return cleaned


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    form = MeterAdminForm
    list_display = ("slug", "name", "unit", "current_price", "is_active")
    search_fields = ("slug", "name")
    list_filter = ("is_active",)
    inlines = (MeterRateInline,)
    fields = ("slug", "name", "unit", "description", "is_active", "new_price", "price_reason")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # events point at meters: deactivate instead

    @admin.display(description="credits per unit")
    def current_price(self, obj: Meter):
        from django.utils import timezone

        rate = services.meter_rate_at(meter=obj, when=timezone.now())
        return f"{rate.credits_per_unit.normalize():f}" if rate else "—"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        price = form.cleaned_data.get("new_price")
        if price is None:
            return
        try:
            services.meter_rate_set(
                meter=obj,
                credits_per_unit=str(price),
                reason=form.cleaned_data["price_reason"],
                actor=request.user,
            )
        except ServiceError as exc:  # validated by the form already; never a 500
            self.message_user(request, exc.detail, level="error")


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("event_id", "organization", "meter", "quantity", "credits", "time")
    list_filter = ("meter",)
    search_fields = ("event_id", "organization__slug", "subject")
    list_select_related = ("organization", "meter")
    date_hierarchy = "time"
