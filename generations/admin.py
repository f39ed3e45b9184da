"""Django admin for generations: the model catalog, its versioned prices, and jobs.

Prices are never edited in place. A change is a new `CreditRate` version through
`generations.services.rate_set` (with the acting admin, the reason and an audit event), made
either from the model's own page ("New price" + "Reason for the change") or by adding a rate.
Existing rates are read-only and never deleted.

Jobs are read-only (with their status log inline); "Cancel selected queued jobs" goes through
`generations.services.generation_cancel`, which releases their holds.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import jsonschema
from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.services import audit_record
from config.errors import ServiceError
from config.web.admin import ReadOnlyMixin
from credits.money import CREDIT_PLACES
from generations import selectors, services, stages
from generations.models import AIModel, CreditRate, Job, JobEvent, JobStatus, PricingPolicy
from generations.rates_admin import CONFIRM_HELP, _clean_price, _confirm_large_change

# --- Models and prices --------------------------------------------------------------------------


class AIModelAdminForm(forms.ModelForm):
    new_price = forms.DecimalField(
        label="New price (credits)",
        required=False,
        max_digits=18,
        decimal_places=CREDIT_PLACES,
        help_text=(
            "Set to change the price per generation: a new price version starts now (jobs "
            "already accepted keep the price they were accepted at). Leave empty to keep the "
            "current price."
        ),
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    price_reason = forms.CharField(
        label="Reason for the price change",
        required=False,
        max_length=255,
        strip=True,
        help_text="Required with a new price; kept in the price history and the audit log.",
    )
    confirm_large_change = forms.BooleanField(
        label="Yes, change the price by more than 10×", required=False, help_text=CONFIRM_HELP
    )

    class Meta:
        model = AIModel
        fields = (
            "slug",
            "name",
            "description",
            "is_active",
            "cache_price_credits",
            "pool",
            "backend",
            "backend_config",
            "max_runtime_s",
            "params_schema",
            "external_cost_usd",
            "cost_stages",
        )

    def clean_new_price(self):
        return _clean_price(self.cleaned_data.get("new_price"))

    def clean_cost_stages(self):
        """Form errors by stage and field (never a 500); amounts stored as exact decimal
        strings."""
        return stages.clean_stages(self.cleaned_data.get("cost_stages"))

    def clean_params_schema(self):
        schema = self.cleaned_data.get("params_schema")
        if not isinstance(schema, dict):
            raise forms.ValidationError("Must be a JSON object (a JSON Schema).")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise forms.ValidationError(f"Not a valid JSON Schema: {exc.message}") from None
        return schema

    def clean(self):
        cleaned = super().clean()
        price, reason = cleaned.get("new_price"), cleaned.get("price_reason")
        if price is not None and not reason:
            self.add_error("price_reason", "Say why the price changes.")
        if price is None and reason and "new_price" not in self.errors:
            self.add_error("new_price", "Give the new price (or clear the reason).")
        if (
            self.instance.pk is None
            and price is None
            and cleaned.get("is_active")
            and "new_price" not in self.errors
        ):
            self.add_error("new_price", "An active model needs a price.")
        if "new_price" not in self.errors:
            _confirm_large_change(self, model=self.instance, price=price)
        return cleaned


class CreditRateInline(ReadOnlyMixin, admin.TabularInline):
    """The model's price history, newest first. Read-only: change the price above."""

    model = CreditRate
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("credits", "price_table", "effective_from", "set_by", "reason", "created_at")
    readonly_fields = fields
    ordering = ("-effective_from",)
    verbose_name = "price version"
    verbose_name_plural = "price history"


@admin.register(AIModel)
class AIModelAdmin(admin.ModelAdmin):
    form = AIModelAdminForm
    list_display = (
        "slug",
        "name",
        "pool",
        "backend",
        "current_price",
        "external_cost_usd",
        "is_active",
    )
    list_filter = ("is_active", "backend", "pool")
    search_fields = ("slug", "name", "description")
    list_select_related = ("pool",)
    readonly_fields = ("current_price", "created_at", "job_links", "stage_cost_per_generation")
    fieldsets = (
        (None, {"fields": ("slug", "name", "description", "is_active")}),
        (
            "Price",
            {
                "fields": (
                    "current_price",
                    "new_price",
                    "price_reason",
                    "confirm_large_change",
                    "cache_price_credits",
                ),
                "description": "Every change is a new version with who, when and why (below).",
            },
        ),
        ("Running", {"fields": ("pool", "backend", "backend_config", "max_runtime_s")}),
        ("Parameters", {"fields": ("params_schema",)}),
        (
            "Costs",
            {
                "fields": ("external_cost_usd", "cost_stages", "stage_cost_per_generation"),
                "description": "Per succeeded generation, besides its GPU time; both are added "
                "to the cost per generation in the unit-cost report and the suggested prices.",
            },
        ),
        ("History", {"fields": ("created_at", "job_links")}),
    )
    inlines = (CreditRateInline,)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # jobs and prices point at models: deactivate instead

    @admin.display(description="current price (credits)")
    def current_price(self, obj: AIModel):
        if obj.pk is None:
            return "—"
        rate = selectors.rate_current(model=obj)
        return rate.credits if rate is not None else "—"

    @admin.display(description="stages per generation (USD)")
    def stage_cost_per_generation(self, obj: AIModel):
        if not obj.cost_stages:
            return "—"
        try:
            total = stages.usd_per_generation(obj.cost_stages)
        except ValueError:
            return "—"
        return f"{total.quantize(Decimal('0.000000001')).normalize():f}"

    @admin.display(description="jobs")
    def job_links(self, obj: AIModel) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:generations_job_changelist")
        return format_html('<a href="{}?model__id__exact={}">jobs of this model</a>', url, obj.pk)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and {"cost_stages", "external_cost_usd"} & set(form.changed_data):
            audit_record(
                action="ai_model.costs_changed",
                actor=request.user,
                target=obj,
                data={
                    "from": {
                        "external_cost_usd": f"{form.initial.get('external_cost_usd')}",
                        "cost_stages": form.initial.get("cost_stages"),
                    },
                    "to": {
                        "external_cost_usd": f"{obj.external_cost_usd}",
                        "cost_stages": obj.cost_stages,
                    },
                },
            )
        price = form.cleaned_data.get("new_price")
        if price is None:
            return
        rate = services.rate_set(
            model=obj, credits=price, reason=form.cleaned_data["price_reason"], actor=request.user
        )
        self.message_user(
            request,
            f"{obj.name} now costs {rate.credits.normalize():f} credits per generation.",
            messages.INFO,
        )


# --- Jobs ---------------------------------------------------------------------------------------


class JobEventInline(admin.TabularInline):
    """The job's status log, in time order."""

    model = JobEvent
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("at", "status", "node", "worker", "message")
    readonly_fields = fields
    ordering = ("at", "id")
    verbose_name = "status log entry"
    verbose_name_plural = "status log"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs are created by submissions and moved by workers: read-only here."""

    list_display = (
        "id",
        "organization",
        "model",
        "status",
        "credits_held",
        "credits_charged",
        "cached",
        "node",
        "created_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "model", "cached", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("organization", "model")
    search_fields = ("organization__slug", "=idempotency_key")
    search_help_text = "A job id, an organization slug, or an exact Idempotency-Key."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    actions = ("cancel_selected",)
    inlines = (JobEventInline,)
    fieldsets = (
        (None, {"fields": ("id", "organization", "model", "status", "priority", "params")}),
        (
            "Credits",
            {
                "fields": (
                    "rate",
                    "credits_held",
                    "credits_charged",
                    "hold",
                    "cached",
                    "cached_from",
                )
            },
        ),
        (
            "Request",
            {"fields": ("api_key", "created_by", "idempotency_key", "request_fingerprint")},
        ),
        (
            "Run",
            {
                "fields": (
                    "node",
                    "attempts",
                    "enqueued_at",
                    "lease_expires_at",
                    "created_at",
                    "started_at",
                    "finished_at",
                )
            },
        ),
        ("Outcome", {"fields": ("result", "error_code", "error")}),
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # jobs are the cost report's input and the ledger's reference

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        try:
            job_id = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(pk=job_id), False

    def has_cancel_permission(self, request, obj=None) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Cancel selected queued jobs", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        """Each queued job through `services.generation_cancel` (hold released, status log
        row and the audit row with the acting admin, in one transaction). Others are skipped."""
        cancelled, skipped = 0, 0
        for job in queryset:
            if job.status == JobStatus.CANCELLED:
                continue
            if job.status != JobStatus.QUEUED:
                skipped += 1
                continue
            try:
                services.generation_cancel(job=job, actor=request.user, audit_by="admin")
            except ServiceError:  # a worker started it meanwhile
                skipped += 1
                continue
            cancelled += 1
        if cancelled:
            self.message_user(
                request,
                f"Cancelled {cancelled} job(s); their holds were released.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} job(s) that were no longer queued.", messages.WARNING
            )


# --- Pricing policy -----------------------------------------------------------------------------


@admin.register(PricingPolicy)
class PricingPolicyAdmin(admin.ModelAdmin):
    """The one pricing policy (spec §3): never deleted, added only while there is none (the
    list goes straight to it). Changes record who made them and an audit event with the
    before and after values. Suggestions are on the staff pricing page and `suggest_prices`."""

    fields = ("credit_value_usd", "target_margin", "min_credits", "step", "example", "updated")
    readonly_fields = ("example", "updated")
    POLICY_FIELDS = ("credit_value_usd", "target_margin", "min_credits", "step")

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and not PricingPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            return super().changelist_view(request, extra_context)
        policy = PricingPolicy.load()
        return HttpResponseRedirect(
            reverse("admin:generations_pricingpolicy_change", args=[policy.pk])
        )

    @admin.display(description="last change")
    def updated(self, obj: PricingPolicy) -> str:
        if obj.pk is None:
            return "—"
        who = obj.updated_by.email if obj.updated_by else "defaults"
        return f"{timezone.localtime(obj.updated_at):%Y-%m-%d %H:%M} by {who}"

    @admin.display(description="what it means")
    def example(self, obj: PricingPolicy) -> str:
        from generations import pricing

        valid = (
            obj.credit_value_usd is not None
            and obj.credit_value_usd > 0
            and obj.target_margin is not None
            and 0 <= obj.target_margin < 1
            and (obj.step or 0) > 0
            and obj.min_credits is not None
        )
        if obj.pk is None or not valid:
            return "—"
        cost = Decimal("0.05")
        credits = pricing.suggested_credits(cost, obj)
        return format_html(
            "A generation costing {} USD fully loaded is priced {} credits ({} USD). "
            'Per-model suggestions: <a href="{}">staff pricing page</a>.',
            cost,
            credits.normalize(),
            (credits * obj.credit_value_usd).normalize(),
            reverse("staff_pricing:index"),
        )

    def save_model(self, request, obj, form, change):
        before = {}
        if change and obj.pk:
            old = PricingPolicy.objects.filter(pk=obj.pk).values(*self.POLICY_FIELDS).first()
            before = old or {}
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
        obj.refresh_from_db()
        diff = {
            name: {
                "from": f"{before[name]:f}" if name in before else None,
                "to": f"{getattr(obj, name):f}",
            }
            for name in self.POLICY_FIELDS
            if before.get(name) != getattr(obj, name)
        }
        audit_record(action="pricing_policy.changed", actor=request.user, target=obj, data=diff)


# Meters and usage events (generations.metering) register their own admin.
from generations.metering import admin as metering_admin  # noqa: E402, F401

# Enterprise contracts and price overrides (versioned, add-only) register their own admin.
from generations.overrides import admin as overrides_admin  # noqa: E402, F401
