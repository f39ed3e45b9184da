"""Django admin for billing (Stripe): staff views of what `credits.billing` records.

Only credit packs are edited directly; the rest is read-only or changed through the billing
services: "Reprocess selected events" → `credits.billing.webhooks.reprocess`, auto top-up edits →
`credits.billing.topup.auto_top_up_configure` (docs/billing.md). Registered with the admin site by
the import in `credits/admin.py` (Django's autodiscovery imports only `<app>.admin`).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from accounts.services import audit_record
from config.errors import ServiceError
from config.web.admin import ReadOnlyMixin
from credits.billing import topup, webhooks
from credits.billing.models import (
    AutoTopUp,
    BillingEmail,
    CreditPack,
    LowBalanceAlert,
    Purchase,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
    StripeWebhookRefusal,
)


def _organization_link(organization) -> str:
    if organization is None:
        return "—"
    url = reverse("admin:accounts_organization_change", args=[organization.pk])
    return format_html('<a href="{}">{}</a>', url, organization.slug)


def _excerpt(text: str, length: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[: length - 1] + "…"


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):
    """Packs offered on the billing page. The slug names the pack in Checkout metadata and
    Stripe lookup keys, so it is fixed once created; packs are deactivated, never deleted. A
    changed price forgets the synced Stripe price (Checkout then sends the new amount inline)
    until `manage.py stripe_sync` creates the new one."""

    list_display = (
        "slug",
        "name",
        "credits",
        "price_usd",
        "active",
        "sort_order",
        "stripe_price_id",
        "updated_at",
    )
    list_filter = ("active",)
    search_fields = ("slug", "name")
    ordering = ("sort_order", "credits", "slug")
    fields = (
        "slug",
        "name",
        "credits",
        "price_usd",
        "active",
        "sort_order",
        "stripe_price_id",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request, obj=None):
        readonly = ("stripe_price_id", "created_at", "updated_at")
        return ("slug", *readonly) if obj is not None else readonly

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # purchases refer to it: uncheck "active" instead

    def save_model(self, request, obj, form, change):
        if change and "price_usd" in form.changed_data and obj.stripe_price_id:
            obj.stripe_price_id = ""
            self.message_user(
                request,
                f"The price of {obj.name} changed: Checkout sends the new amount until "
                "`manage.py stripe_sync` creates its Stripe price.",
                messages.WARNING,
            )
        super().save_model(request, obj, form, change)
        audit_record(
            action="billing.credit_pack_changed" if change else "billing.credit_pack_created",
            actor=request.user,
            target=obj,
            data={
                "slug": obj.slug,
                "changed": sorted(form.changed_data),
                "credits": str(obj.credits),
                "price_usd": str(obj.price_usd),
                "active": obj.active,
            },
        )


def set_or_unset_filter(*, field: str, parameter: str, title: str, yes: str, no: str):
    """A list filter on whether a nullable field is set ("yes") or not ("no")."""

    class SetOrUnsetFilter(admin.SimpleListFilter):
        parameter_name = parameter

        def lookups(self, request, model_admin):
            return (("yes", yes), ("no", no))

        def queryset(self, request, queryset):
            if self.value() in ("yes", "no"):
                return queryset.filter(**{f"{field}__isnull": self.value() == "no"})
            return queryset

    SetOrUnsetFilter.title = title
    return SetOrUnsetFilter


PastDueFilter = set_or_unset_filter(
    field="past_due_since",
    parameter="past_due",
    title="past due",
    yes="Past due",
    no="In good standing",
)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "stripe_customer_id",
        "organization_link",
        "email",
        "default_payment_method_id",
        "past_due_since",
        "created_at",
    )
    list_filter = (PastDueFilter,)
    list_select_related = ("organization",)
    search_fields = (
        "stripe_customer_id",
        "email",
        "organization__slug",
        "organization__name",
    )
    ordering = ("organization__slug",)

    @admin.display(description="organization", ordering="organization__slug")
    def organization_link(self, obj: StripeCustomer) -> str:
        return _organization_link(obj.organization)


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every verified webhook event as stored before processing. "Reprocess selected events"
    runs `credits.billing.webhooks.reprocess` (a processed event is never applied twice).
    Refused deliveries are counted per hour (`StripeWebhookRefusalAdmin`); `invalid` rows are
    older refusals, pruned after `webhooks.REFUSAL_RETENTION`."""

    list_display = (
        "received_at",
        "event_id_display",
        "type",
        "status_short",
        "signature_valid",
        "attempts",
        "deliveries",
        "processed_at",
        "organization_link",
        "error_excerpt",
    )
    list_filter = ("status", "type", "signature_valid", "livemode")
    list_select_related = ("organization",)
    search_fields = ("event_id",)
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    actions = ("reprocess_selected",)
    fields = (
        "event_id",
        "type",
        "status",
        "signature_valid",
        "livemode",
        "api_version",
        "organization_link",
        "stripe_created_at",
        "received_at",
        "last_attempt_at",
        "processed_at",
        "attempts",
        "deliveries",
        "note",
        "error",
        "payload_pretty",
        "raw_body",
    )
    readonly_fields = fields

    @admin.display(description="event id", ordering="event_id")
    def event_id_display(self, obj: StripeEvent) -> str:
        return obj.event_id or "(invalid delivery)"

    @admin.display(description="status", ordering="status")
    def status_short(self, obj: StripeEvent) -> str:
        return obj.status  # the short code; the filter explains each one

    @admin.display(description="organization", ordering="organization__slug")
    def organization_link(self, obj: StripeEvent) -> str:
        return _organization_link(obj.organization)

    @admin.display(description="error")
    def error_excerpt(self, obj: StripeEvent) -> str:
        return _excerpt(obj.error, 60)

    @admin.display(description="payload")
    def payload_pretty(self, obj: StripeEvent) -> str:
        if obj.payload is None:
            return "—"
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="stripe-payload">{}</pre>', text)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is not None and not obj.raw_body:
            fields = [f for f in fields if f != "raw_body"]
        return fields

    def has_reprocess_permission(self, request, obj=None) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Reprocess selected events", permissions=["reprocess"])
    def reprocess_selected(self, request, queryset):
        done, failed, skipped = [], [], 0
        for event in queryset.order_by("stripe_created_at", "received_at", "pk"):
            if event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.INVALID):
                skipped += 1  # processed: never applied twice; invalid: nothing to apply
                continue
            outcome = webhooks.reprocess(event=event, actor=request.user)
            status = outcome.body.get("status", "")
            if outcome.status_code == 200:
                done.append(f"{event.event_id} ({status})")
            else:
                failed.append(f"{event.event_id}: {_excerpt(outcome.body.get('error', ''), 200)}")
        if done:
            self.message_user(
                request, f"Reprocessed {len(done)} event(s): {', '.join(done)}.", messages.SUCCESS
            )
        for line in failed:
            self.message_user(request, f"Still failing — {line}", messages.ERROR)
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} event(s) already processed or invalid.",
                messages.WARNING,
            )


@admin.register(StripeWebhookRefusal)
class StripeWebhookRefusalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Refused webhook deliveries (bad signature, malformed payload), per hour: how many, and
    the first few with why and the body's first characters. Nothing else of them is kept."""

    list_display = ("hour", "count", "samples_kept", "last_at", "last_error")
    date_hierarchy = "hour"
    ordering = ("-hour",)
    fields = ("hour", "count", "last_at", "samples_pretty")
    readonly_fields = fields

    @admin.display(description="samples kept")
    def samples_kept(self, obj: StripeWebhookRefusal) -> int:
        return len(obj.samples or [])

    @admin.display(description="last sampled error")
    def last_error(self, obj: StripeWebhookRefusal) -> str:
        return _excerpt(obj.samples[-1].get("error", ""), 80) if obj.samples else ""

    @admin.display(description="samples")
    def samples_pretty(self, obj: StripeWebhookRefusal) -> str:
        text = json.dumps(obj.samples, indent=2, ensure_ascii=False)
        return format_html('<pre class="stripe-payload">{}</pre>', text)


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Credit packs bought through Checkout or auto top-up. Flagged: a refund took back credits
    that were already spent (`selectors.flagged_purchases`)."""

    list_display = (
        "id",
        "created_at",
        "organization_link",
        "kind",
        "pack",
        "credits",
        "amount_usd",
        "status",
        "flagged",
        "paid_at",
    )
    list_filter = ("flagged", "status", "kind", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("organization", "pack")
    search_fields = (
        "=id",
        "organization__slug",
        "organization__name",
        "stripe_checkout_session_id",
        "stripe_payment_intent_id",
        "stripe_charge_id",
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    @admin.display(description="organization", ordering="organization__slug")
    def organization_link(self, obj: Purchase) -> str:
        return _organization_link(obj.organization)


class AutoTopUpForm(forms.ModelForm):
    class Meta:
        model = AutoTopUp
        fields = ("enabled", "threshold_credits", "pack")

    def clean(self):
        data = super().clean()
        pack = data.get("pack")
        if pack is not None and not pack.active:
            self.add_error("pack", "This pack is not offered (inactive).")
        if (
            data.get("enabled")
            and self.instance.pk
            and not StripeCustomer.objects.filter(
                organization_id=self.instance.organization_id
            ).exists()
        ):
            self.add_error("enabled", "The organization has no Stripe customer (no saved card).")
        return data


@admin.register(AutoTopUp)
class AutoTopUpAdmin(admin.ModelAdmin):
    """Organizations turn auto top-up on from the billing page; staff may change enabled,
    threshold and pack here, through `credits.billing.topup.auto_top_up_configure`."""

    form = AutoTopUpForm
    list_display = (
        "organization_link",
        "enabled",
        "threshold_credits",
        "pack",
        "armed",
        "last_triggered_at",
        "last_succeeded_at",
        "last_failed_at",
        "failure_excerpt",
    )
    list_filter = ("enabled", "armed")
    list_select_related = ("organization", "pack")
    search_fields = ("organization__slug", "organization__name")
    ordering = ("organization__slug",)
    fields = (
        "organization",
        "enabled",
        "threshold_credits",
        "pack",
        "armed",
        "last_purchase",
        "last_triggered_at",
        "last_succeeded_at",
        "last_failed_at",
        "failure_reason",
        "updated_by",
        "created_at",
        "updated_at",
    )
    readonly_fields = tuple(f for f in fields if f not in ("enabled", "threshold_credits", "pack"))

    @admin.display(description="organization", ordering="organization__slug")
    def organization_link(self, obj: AutoTopUp) -> str:
        return _organization_link(obj.organization)

    @admin.display(description="failure")
    def failure_excerpt(self, obj: AutoTopUp) -> str:
        return _excerpt(obj.failure_reason)

    def has_add_permission(self, request) -> bool:
        return False  # created from the organization's billing page

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # turn it off instead

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            topup.auto_top_up_configure(
                organization=obj.organization,
                actor=None,  # staff: not a member of the organization
                enabled=data["enabled"],
                threshold_credits=data["threshold_credits"],
                pack=data["pack"],
            )
        except ServiceError as exc:
            self.message_user(request, f"Nothing changed: {exc.detail}", messages.ERROR)
            return
        audit_record(
            action="billing.auto_top_up_changed_by_staff",
            organization=obj.organization,
            actor=request.user,
            target=obj,
            data={
                "enabled": data["enabled"],
                "threshold": str(data["threshold_credits"]),
                "pack": data["pack"].slug,
            },
        )


@admin.register(LowBalanceAlert)
class LowBalanceAlertAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("organization_link", "enabled", "threshold_credits", "armed", "last_sent_at")
    list_filter = ("enabled", "armed")
    list_select_related = ("organization",)
    search_fields = ("organization__slug", "organization__name")
    ordering = ("organization__slug",)

    @admin.display(description="organization", ordering="organization__slug")
    def organization_link(self, obj: LowBalanceAlert) -> str:
        return _organization_link(obj.organization)


SentFilter = set_or_unset_filter(
    field="sent_at", parameter="sent", title="sent", yes="Sent", no="Not sent"
)


@admin.register(BillingEmail)
class BillingEmailAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "organization_link", "kind", "subject", "sent_at", "error")
    list_filter = ("kind", SentFilter)
    list_select_related = ("organization",)
    search_fields = ("organization__slug", "organization__name", "dedupe_key", "subject")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    show_full_result_count = False

    @admin.display(description="organization", ordering="organization__slug")
    def organization_link(self, obj: BillingEmail) -> str:
        return _organization_link(obj.organization)
