"""Django admin for the credits ledger: staff support views.

Nothing here edits balances, grants, holds or entries directly — they are read-only. What
moves credits goes through `credits.services`, which posts the movement and its audit row
(with the acting admin) in one transaction:

* a **manual adjustment** of an account (an "Adjust credits" button on its page and an
  action on the list) → `credits.services.account_adjust`;
* "Release selected holds" → `credits.services.hold_release_by_staff`;
* "Mark selected overage paid" → `credits.services.overage_settle`;
* "Invoice now" (overage) → `credits.billing.overage.invoice_overage`.

The billing (Stripe) admin classes live in `credits.billing.admin`, registered by the import
below.
"""

from __future__ import annotations

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
from config.web.admin import ReadOnlyMixin
from credits import services
from credits.billing import admin as billing_admin  # noqa: F401  (registers the billing admin)
from credits.forms import AccountAdjustmentForm
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    EntryAllocation,
    HoldStatus,
    LedgerEntry,
    OverageRecord,
    OverageStatus,
)

RECENT_ENTRIES = 20


def _changelist_link(model, label: str, **filters) -> str:
    url = reverse(f"admin:credits_{model._meta.model_name}_changelist")
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


def _account_link(account: CreditAccount) -> str:
    url = reverse("admin:credits_creditaccount_change", args=[account.pk])
    return format_html('<a href="{}">{}</a>', url, account.organization.slug)


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
                services.hold_release_by_staff(
                    hold=hold, actor=request.user, reason="released by admin"
                )
            except ServiceError:  # resolved meanwhile
                skipped += 1
                continue
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
                services.overage_settle(
                    record=record, actor=request.user, reason="overage paid (recorded by admin)"
                )
            except ServiceError:
                skipped += 1
                continue
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


# Budgets register their own admin (credits/budgets/admin.py).
from credits.budgets import admin as budget_admin  # noqa: E402, F401

# Promo codes register their own admin (credits/promos/admin.py).
from credits.promos import admin as promo_admin  # noqa: E402, F401

# Free trials and referrals register their own admin (credits/trials/admin.py).
from credits.trials import admin as trial_admin  # noqa: E402, F401

# The spend-velocity pause registers its own admin (credits/velocity/admin.py).
from credits.velocity import admin as velocity_admin  # noqa: E402, F401
