"""Admin of the infrastructure inputs: pools with their versioned rates and schedule set-points,
nodes, and read-only uptime and GPU runs (those come from imports and from the system itself).

Rates are versions, never edited: existing rows are read-only and a change is a new row with
its `effective_from`, written by `infra_costs.services.pool_rate_add` with who and why.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from config.web.admin import ReadOnlyMixin
from infra_costs import fleet, services
from infra_costs.fleet.providers import PROVIDERS
from infra_costs.fleet.providers import simulated as simulated_provider
from infra_costs.models import (
    AutoscalePolicy,
    GpuRun,
    Node,
    NodeEvent,
    NodePool,
    PoolRate,
    ScalingAction,
    ScalingDecision,
    ScheduleSetPoint,
    ScheduleVersion,
    UptimeInterval,
)
from infra_costs.schedule import cron_error, timezone_error


class PoolRateInline(admin.TabularInline):
    model = PoolRate
    extra = 0
    fields = (
        "hourly_rate_usd",
        "warm_hourly_rate_usd",
        "spot_hourly_rate_usd",
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
        "node count (unversioned set-points: in force until the pool's first schedule version)"
    )

    def get_queryset(self, request):
        return super().get_queryset(request).filter(version__isnull=True)


@admin.register(NodePool)
class NodePoolAdmin(admin.ModelAdmin):
    list_display = ("slug", "gpu_type", "current_rate", "min_nodes", "sla_queue_wait_s", "timezone")
    search_fields = ("slug", "gpu_type")
    inlines = (PoolRateInline, ScheduleSetPointInline)
    readonly_fields = ("schedule_versions",)

    @admin.display(description="schedule versions (applied on the capacity plan page)")
    def schedule_versions(self, obj) -> str:
        """Read-only history: the latest version in force is the pool's schedule."""
        if obj is None or obj.pk is None:
            return "—"
        versions = ScheduleVersion.objects.filter(pool=obj).prefetch_related("set_points")
        lines = [
            f"v{v.number} from {v.effective_from:%Y-%m-%d %H:%M} ({v.reason}): "
            + "; ".join(f"{sp.cron} → {sp.node_count}" for sp in v.set_points.all())
            for v in versions.order_by("-number")
        ]
        return " | ".join(lines) or "none: the set-points below are the schedule"

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
                spot_hourly_rate_usd=data.get("spot_hourly_rate_usd"),
                effective_from=data["effective_from"],
                reason=data.get("reason") or "",
                actor=request.user,
            )
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        return None


def _staff_action(action: str, verb: str):
    """An admin action running `fleet_staff_action` on each selected node, by the user."""

    def run(modeladmin, request, queryset):
        for node in queryset.select_related("pool").order_by("pool__slug", "name"):
            decision = fleet.fleet_staff_action(
                pool=node.pool, action=action, node=node, actor=request.user
            )
            if decision.ok:
                modeladmin.message_user(request, f"{node.name}: {verb}.", messages.SUCCESS)
            else:
                modeladmin.message_user(request, f"{node.name}: {decision.error}", messages.ERROR)

    run.__name__ = f"fleet_{action}"
    return admin.action(description=f"{verb.capitalize()} (fleet, recorded as a decision)")(run)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "pool",
        "state",
        "transition",
        "health",
        "provider",
        "capacity_type",
        "is_primary",
        "state_since",
    )
    list_filter = ("pool", "state", "transition", "health", "provider", "is_primary")
    search_fields = ("name",)
    list_select_related = ("pool",)
    actions = (
        _staff_action(ScalingAction.RESUME, "resume requested"),
        _staff_action(ScalingAction.STOP, "stop to warm requested"),
        _staff_action(ScalingAction.RELEASE, "release requested"),
    )


@admin.register(UptimeInterval)
class UptimeIntervalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("node", "pool", "started_at", "ended_at", "rate_kind", "source")
    list_filter = ("pool", "rate_kind", "source")
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


# --- The fleet: autoscale policies, decisions, node events ------------------------------------

CONFIG_ERRORS = {"simulated": simulated_provider.config_errors}


class AutoscalePolicyForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=[(p, p) for p in PROVIDERS])

    class Meta:
        model = AutoscalePolicy
        fields = (
            "pool",
            "enabled",
            "provider",
            "provider_config",
            "capacity_type",
            "max_nodes",
            "node_slots",
            "resume_queue_depth",
            "rent_queue_depth",
            "calm_queue_depth",
            "calm_for_s",
            "warm_release_after_s",
            "priority_wait_s",
            "free_tier_max_wait_s",
        )

    def clean(self):
        data = super().clean()
        provider, config = data.get("provider"), data.get("provider_config")
        check = CONFIG_ERRORS.get(provider)
        if check is not None and "provider_config" in data:
            errors = check(config if config is not None else {})
            if errors:
                self.add_error(
                    "provider_config",
                    [
                        msg if key == "provider_config" else f"{key}: {msg}"
                        for key, msg in sorted(errors.items())
                    ],
                )
        resume, rent = data.get("resume_queue_depth"), data.get("rent_queue_depth")
        if resume is not None and rent is not None and resume > rent:
            self.add_error(
                "resume_queue_depth", "Resume a warm node at or below the depth that rents one."
            )
        return data


@admin.register(AutoscalePolicy)
class AutoscalePolicyAdmin(admin.ModelAdmin):
    form = AutoscalePolicyForm
    list_display = (
        "pool",
        "enabled",
        "provider",
        "capacity_type",
        "max_nodes",
        "resume_queue_depth",
        "rent_queue_depth",
        "calm_queue_depth",
        "updated_at",
    )
    list_filter = ("enabled", "provider")
    list_select_related = ("pool",)
    readonly_fields = ("calm_since", "updated_at")


@admin.register(ScalingDecision)
class ScalingDecisionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("at", "pool", "action", "node", "ok", "reason", "error", "decided_by")
    list_filter = ("pool", "action", "ok")
    search_fields = ("node__name", "reason")
    list_select_related = ("pool", "node", "decided_by")
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(NodeEvent)
class NodeEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("at", "node", "state", "transition", "message")
    list_filter = ("node__pool", "state", "transition")
    search_fields = ("node__name",)
    list_select_related = ("node",)
    show_full_result_count = False
