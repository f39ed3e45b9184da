"""Admin of the infrastructure inputs: pools with their versioned rates and schedule set-points,
nodes, and read-only uptime and GPU runs (those come from imports and from the system itself).

Rates are versions, never edited: existing rows are read-only and a change is a new row with
its `effective_from`, written by `infra_costs.services.pool_rate_add` with who and why.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from config.web.admin import ReadOnlyMixin
from infra_costs import services
from infra_costs.models import GpuRun, Node, NodePool, PoolRate, ScheduleSetPoint, UptimeInterval
from infra_costs.schedule import cron_error, timezone_error


class PoolRateInline(admin.TabularInline):
    model = PoolRate
    extra = 0
    fields = (
        "hourly_rate_usd",
        "warm_hourly_rate_usd",
        "effective_from",
        "reason",
        "created_by",
        "created_at",
    )
    readonly_fields = ("created_by", "created_at")
    verbose_name = "rate version"
    verbose_name_plural = "Rate versions (never edited: add a new version to change the price)"

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # existing versions are shown read-only; new ones can be added

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SetPointForm(forms.ModelForm):
    class Meta:
        model = ScheduleSetPoint
        fields = ("cron", "node_count", "timezone", "active")

    def clean_cron(self) -> str:
        cron = " ".join(self.cleaned_data["cron"].split())
        error = cron_error(cron)
        if error:
            raise forms.ValidationError(error)
        return cron

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"].strip()
        error = timezone_error(name)
        if error:
            raise forms.ValidationError(error)
        return name


class ScheduleSetPointInline(admin.TabularInline):
    model = ScheduleSetPoint
    form = SetPointForm
    extra = 0
    verbose_name = "schedule set-point"
    verbose_name_plural = (
        "Schedule: at each firing of the cron (in its time zone) the pool's size becomes the "
        "node count"
    )


@admin.register(NodePool)
class NodePoolAdmin(admin.ModelAdmin):
    list_display = ("slug", "gpu_type", "current_rate", "min_nodes", "sla_queue_wait_s", "timezone")
    search_fields = ("slug", "gpu_type")
    inlines = (PoolRateInline, ScheduleSetPointInline)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("rates")

    @admin.display(description="current rate (USD/h per node)")
    def current_rate(self, obj: NodePool) -> str:
        rates = sorted(obj.rates.all(), key=lambda r: r.effective_from)
        return f"{rates[-1].hourly_rate_usd}" if rates else "—"

    def save_formset(self, request, form, formset, change):
        if formset.model is not PoolRate:
            return super().save_formset(request, form, formset, change)
        for rate_form in formset.forms:
            if rate_form.instance.pk or not rate_form.has_changed():
                continue
            data = rate_form.cleaned_data
            if not data or data.get("DELETE"):
                continue
            services.pool_rate_add(
                pool=form.instance,
                hourly_rate_usd=data["hourly_rate_usd"],
                warm_hourly_rate_usd=data.get("warm_hourly_rate_usd"),
                effective_from=data["effective_from"],
                reason=data.get("reason") or "",
                actor=request.user,
            )
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        return None


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "pool", "created_at")
    list_filter = ("pool",)
    search_fields = ("name",)


@admin.register(UptimeInterval)
class UptimeIntervalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("node", "pool", "started_at", "ended_at", "source")
    list_filter = ("pool", "source")
    search_fields = ("node__name",)
    list_select_related = ("node", "pool")
    show_full_result_count = False


@admin.register(GpuRun)
class GpuRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("external_id", "model_slug", "pool", "node", "started_at", "finished_at")
    list_filter = ("pool", "status", "source")
    search_fields = ("=external_id", "=model_slug")
    list_select_related = ("node", "pool")
    show_full_result_count = False  # a year of history is millions of rows
