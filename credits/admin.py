"""Django admin for the credits ledger: staff support views.

Nothing here edits balances, grants, holds or entries directly — they are read-only. What
moves credits goes through the ledger/services with the acting admin recorded:

* a **manual adjustment** of an account (an "Adjust credits" button on its page and an
  action on the list) → `credits.services.account_adjust`;
* "Release selected holds" → `credits.ledger.hold_release`;
* "Mark selected overage paid" → `credits.ledger.overage_settle`;
* billing: "Invoice now" → `credits.billing.overage.invoice_overage`, "Reprocess selected
  events" → `credits.billing.webhooks.reprocess`, auto top-up edits →
  `credits.billing.topup.auto_top_up_configure` (credit packs are edited directly).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.services import audit_record
from config.errors import ServiceError
from credits import ledger, services
from credits.forms import AccountAdjustmentForm
from credits.models import (
    AutoTopUp,
    BillingEmail,
    CreditAccount,
    CreditGrant,
    CreditHold,
    CreditPack,
    EntryAllocation,
    HoldStatus,
    LedgerEntry,
    LowBalanceAlert,
    OverageRecord,
    OverageStatus,
    Purchase,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
)

RECENT_ENTRIES = 20


def _changelist_link(model, label: str, **filters) -> str:
    url = reverse(f"admin:credits_{model._meta.model_name}_changelist")
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


def _account_link(account: CreditAccount) -> str:
    url = reverse("admin:credits_creditaccount_change", args=[account.pk])
    return format_html('<a href="{}">{}</a>', url, account.organization.slug)


class ReadOnlyMixin:
    """Viewable by staff with the view permission; never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Accounts -----------------------------------------------------------------------------------


class RecentEntriesInline(ReadOnlyMixin, admin.TabularInline):
    """The account's latest entries (the full list is one click away)."""

    model = LedgerEntry
    fk_name = "account"
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ("-sequence",)
    fields = (
        "sequence",
        "kind",
        "amount",
        "balance_delta",
        "held_delta",
        "balance_after",
        "held_after",
        "hold",
        "actor",
        "reason",
        "created_at",
    )
    readonly_fields = fields
    verbose_name = "ledger entry"
    verbose_name_plural = f"latest {RECENT_ENTRIES} ledger entries"

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("actor", "hold")
        match = getattr(request, "resolver_match", None)
        try:
            account_id = int(unquote(match.kwargs["object_id"])) if match else None
        except (KeyError, TypeError, ValueError):
            account_id = None
        if account_id is None:
            return qs.none()
        latest = (
            LedgerEntry.objects.filter(account_id=account_id)
            .order_by("-sequence")
            .values_list("pk", flat=True)[:RECENT_ENTRIES]
        )
        return qs.filter(pk__in=list(latest))


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Accounts are created by the ledger and their amounts change only through it: the page is
    read-only; "Adjust credits" posts a manual adjustment through the service."""

    list_display = (
        "organization",
        "balance",
        "held",
        "available_display",
        "overage_limit",
        "version",
        "updated_at",
    )
    list_select_related = ("organization",)
    search_fields = ("organization__slug", "organization__name")
    ordering = ("organization__slug",)
    fields = (
        "organization",
        "balance",
        "held",
        "available_display",
        "overage_limit",
        "version",
        "created_at",
        "updated_at",
        "related_links",
    )
    readonly_fields = fields
    inlines = (RecentEntriesInline,)
    actions = ("adjust_credits",)

    @admin.display(description="available", ordering=F("balance") - F("held"))
    def available_display(self, obj: CreditAccount):
        return obj.available

    @admin.display(description="more")
    def related_links(self, obj: CreditAccount) -> str:
        return format_html(
            "{} · {} · {} · {}",
            _changelist_link(LedgerEntry, "all ledger entries", account__id__exact=obj.pk),
            _changelist_link(CreditGrant, "grants", account__id__exact=obj.pk),
            _changelist_link(CreditHold, "holds", account__id__exact=obj.pk),
            _changelist_link(OverageRecord, "overage records", account__id__exact=obj.pk),
        )

    # Adjustments ------------------------------------------------------------------------------

    def has_adjust_permission(self, request, obj=None) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name=f"{info[0]}_{info[1]}_adjust",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_adjust": self.has_adjust_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Adjust credits of the selected account…", permissions=["adjust"])
    def adjust_credits(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(
                request, "Select exactly one account to adjust.", level=messages.WARNING
            )
            return None
        return HttpResponseRedirect(reverse("admin:credits_creditaccount_adjust", args=ids))

    def adjust_view(self, request, object_id):
        """GET: the form (with a fresh one-time token). POST: one adjustment per token through
        `services.account_adjust`, recorded with the acting admin; errors re-show the form and
        write nothing."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        account = self.get_object(request, unquote(object_id))
        if account is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:credits_creditaccount_change", args=[account.pk])
        if request.method == "POST":
            form = AccountAdjustmentForm(request.POST)
            if form.is_valid():
                response = self._apply_adjustment(request, account, form, change_url)
                if response is not None:
                    return response
        else:
            form = AccountAdjustmentForm()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust credits of {account.organization}",
            "subtitle": None,
            "opts": self.opts,
            "original": account,
            "form": form,
            "change_url": change_url,
            "has_view_permission": self.has_view_permission(request, account),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/credits/creditaccount/adjust.html", context)

    def _apply_adjustment(self, request, account, form, change_url):
        amount = form.cleaned_data["amount"]
        key = form.idempotency_key()
        done = LedgerEntry.objects.filter(account=account, idempotency_key=key).first()
        if done is not None:  # the same form submitted again: it already took effect
            if done.balance_delta != amount:
                form.add_error(
                    None,
                    "This form was already submitted with another amount. Reload the page "
                    "to make a new adjustment.",
                )
                return None
            self.message_user(
                request,
                "This adjustment was already applied; nothing more was done.",
                level=messages.INFO,
            )
            return HttpResponseRedirect(change_url)
        try:
            entry = services.account_adjust(
                account=account,
                amount=amount,
                reason=form.cleaned_data["reason"],
                actor=request.user,
                idempotency_key=key,
            )
        except ServiceError as exc:
            for field, errors in exc.errors.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
            if not exc.errors:
                form.add_error(None, exc.detail)
            return None
        self.message_user(
            request,
            f"Adjusted {account.organization} by {entry.balance_delta} credits "
            f"(entry #{entry.sequence}); balance is now {entry.balance_after}.",
            level=messages.SUCCESS,
        )
        return HttpResponseRedirect(change_url)


# --- Grants -------------------------------------------------------------------------------------


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return (("yes", "Expired"), ("no", "Not expired"))

    def queryset(self, request, queryset):
        now = timezone.now()
        expired = Q(expired_at__isnull=False) | Q(expires_at__lte=now)
        if self.value() == "yes":
            return queryset.filter(expired)
        if self.value() == "no":
            return queryset.exclude(expired)
        return queryset


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "account_link",
        "source",
        "amount",
        "remaining",
        "priority",
        "expires_at",
        "expired_at",
        "reference",
        "created_at",
    )
    list_filter = ("source", ExpiredFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("account__organization",)
    search_fields = (
        "=id",
        "reference",
        "account__organization__slug",
        "account__organization__name",
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    @admin.display(description="account", ordering="account__organization__slug")
    def account_link(self, obj: CreditGrant) -> str:
        return _account_link(obj.account)


# --- Holds --------------------------------------------------------------------------------------


@admin.register(CreditHold)
class CreditHoldAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "key",
        "account_link",
        "amount",
        "status",
        "captured_amount",
        "unfunded",
        "created_at",
        "expires_at",
        "resolved_at",
    )
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("account__organization",)
    search_fields = ("key", "account__organization__slug", "account__organization__name")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ("release_selected_holds",)
    show_full_result_count = False

    @admin.display(description="account", ordering="account__organization__slug")
    def account_link(self, obj: CreditHold) -> str:
        return _account_link(obj.account)

    def has_release_permission(self, request, obj=None) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Release selected holds", permissions=["release"])
    def release_selected_holds(self, request, queryset):
        released, skipped = 0, 0
        for hold in queryset.select_related("account__organization"):
            if hold.status != HoldStatus.HELD:
                skipped += 1
                continue
            try:
                ledger.hold_release(hold=hold, actor=request.user, reason="released by admin")
            except ServiceError:  # captured meanwhile
                skipped += 1
                continue
            audit_record(
                action="credits.hold_released",
                organization=hold.account.organization,
                actor=request.user,
                target=hold,
                data={"key": hold.key, "amount": str(hold.amount), "reason": "released by admin"},
            )
            released += 1
        if released:
            self.message_user(request, f"Released {released} hold(s).", level=messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} hold(s) already captured, released or expired.",
                level=messages.WARNING,
            )


# --- Entries ------------------------------------------------------------------------------------


class AllocationInline(ReadOnlyMixin, admin.TabularInline):
    """How the entry moved grants' `remaining` (no grant: the unfunded/overage part)."""

    model = EntryAllocation
    fk_name = "entry"
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("grant", "amount")
    readonly_fields = fields
    verbose_name_plural = "allocations (effect on grants)"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Append-only: entries are never edited or deleted (the database refuses it too)."""

    list_display = (
        "id",
        "account_link",
        "sequence",
        "kind",
        "amount",
        "balance_delta",
        "held_delta",
        "balance_after",
        "held_after",
        "actor",
        "reason",
        "created_at",
    )
    list_filter = ("kind", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("account__organization", "actor")
    search_fields = (
        "idempotency_key",
        "account__organization__slug",
        "account__organization__name",
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    inlines = (AllocationInline,)

    @admin.display(description="account", ordering="account__organization__slug")
    def account_link(self, obj: LedgerEntry) -> str:
        return _account_link(obj.account)


# --- Overage ------------------------------------------------------------------------------------


@admin.register(OverageRecord)
class OverageRecordAdmin(admin.ModelAdmin):
    """A period's overage handed to billing. Amounts are read-only; staff may note the Stripe
    invoice and move an unpaid record between open and invoiced. Payment is recorded by the
    "Mark selected overage paid" action, which posts the settlement entry."""

    list_display = (
        "id",
        "account_link",
        "plan_slug",
        "period_start",
        "period_end",
        "credits",
        "usd_per_credit",
        "amount_usd",
        "status",
        "stripe_invoice_id",
        "settlement_entry",
    )
    list_filter = ("status", "plan_slug", ("period_end", admin.DateFieldListFilter))
    list_select_related = ("account__organization", "settlement_entry")
    search_fields = (
        "account__organization__slug",
        "account__organization__name",
        "stripe_invoice_id",
    )
    ordering = ("-period_end", "-id")
    fields = (
        "account",
        "plan_slug",
        "period_start",
        "period_end",
        "credits",
        "usd_per_credit",
        "amount_usd",
        "status",
        "stripe_invoice_id",
        "settlement_entry",
        "created_at",
        "updated_at",
    )
    actions = ("settle_selected", "invoice_now")
    EDITABLE_STATUSES = (OverageStatus.OPEN, OverageStatus.INVOICED)

    @admin.display(description="account", ordering="account__organization__slug")
    def account_link(self, obj: OverageRecord) -> str:
        return _account_link(obj.account)

    def has_add_permission(self, request) -> bool:
        return False  # created when a billing period closes

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        editable = {"stripe_invoice_id"}
        if obj is None or obj.status in self.EDITABLE_STATUSES:
            editable.add("status")
        return [f for f in self.fields if f not in editable]

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "status":
            kwargs["choices"] = [
                (value, label)
                for value, label in OverageStatus.choices
                if value in self.EDITABLE_STATUSES
            ]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        """Write only the editable fields, and only while the record is unpaid, so a settlement
        that happened meanwhile is never overwritten."""
        values = {f: form.cleaned_data[f] for f in form.changed_data if f in form.cleaned_data}
        if not values:
            return
        updated = OverageRecord.objects.filter(
            pk=obj.pk, status__in=self.EDITABLE_STATUSES, settlement_entry__isnull=True
        ).update(**values, updated_at=timezone.now())
        if not updated:
            self.message_user(
                request, "The record was settled meanwhile; nothing changed.", messages.WARNING
            )

    def has_settle_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj)

    @admin.action(
        description="Mark selected overage paid (post settlement)", permissions=["settle"]
    )
    def settle_selected(self, request, queryset):
        settled, skipped = 0, 0
        for record in queryset.select_related("account__organization"):
            if record.status not in self.EDITABLE_STATUSES or record.settlement_entry_id:
                skipped += 1
                continue
            try:
                entry = ledger.overage_settle(
                    record=record, actor=request.user, reason="overage paid (recorded by admin)"
                )
            except ServiceError:
                skipped += 1
                continue
            audit_record(
                action="overage.settled",
                organization=record.account.organization,
                actor=request.user,
                target=record,
                data={"credits": str(record.credits), "entry": entry.pk},
            )
            settled += 1
        if settled:
            self.message_user(request, f"Settled {settled} record(s).", level=messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} record(s) already paid or void.", messages.WARNING
            )

    def has_invoice_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj)

    @admin.action(description="Invoice now (Stripe)", permissions=["invoice"])
    def invoice_now(self, request, queryset):
        """`credits.billing.overage.invoice_overage` for each open record: one Stripe invoice
        per record however often this runs (the beat task does the same every 10 minutes)."""
        from credits.billing.overage import invoice_overage

        invoiced, skipped, failed = [], 0, []
        for record in queryset.order_by("pk"):
            if record.status != OverageStatus.OPEN:
                skipped += 1
                continue
            try:
                invoice_id = invoice_overage(record_id=record.pk)
            except ServiceError as exc:
                failed.append(f"#{record.pk}: {exc.detail}")
                continue
            if invoice_id:
                invoiced.append(f"#{record.pk} → {invoice_id}")
                audit_record(
                    action="overage.invoice_requested",
                    organization=record.account.organization,
                    actor=request.user,
                    target=record,
                    data={"invoice": invoice_id},
                )
            else:
                skipped += 1  # waived (under a cent) or being invoiced by another run
        if invoiced:
            self.message_user(
                request,
                f"Invoiced {len(invoiced)} record(s): {', '.join(invoiced)}.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} record(s) not open (already invoiced, paid, void or waived).",
                messages.WARNING,
            )
        for line in failed:
            self.message_user(request, f"Could not invoice {line}", messages.ERROR)


# --- Billing (Stripe) ---------------------------------------------------------------------------
# Staff views of what `credits.billing` records. Only credit packs are edited directly; the
# rest is read-only or changed through the billing services (docs/billing.md).


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
    """Every webhook delivery as stored before processing. "Reprocess selected events" runs
    `credits.billing.webhooks.reprocess` (a processed event is never applied twice)."""

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
        from credits.billing.webhooks import reprocess

        done, failed, skipped = [], [], 0
        for event in queryset.order_by("stripe_created_at", "received_at", "pk"):
            if event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.INVALID):
                skipped += 1  # processed: never applied twice; invalid: nothing to apply
                continue
            outcome = reprocess(event=event, actor=request.user)
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
        from credits.billing.topup import auto_top_up_configure

        data = form.cleaned_data
        try:
            auto_top_up_configure(
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
