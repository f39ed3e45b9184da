"""Admin for enterprise contracts and price overrides (imported by `generations.admin`).

Both are versioned: the admin adds a new version through the services (who and why kept, an
audit row with before/after) and never edits or deletes one — the list is the history.
Registered here (not in accounts) because a contract change also moves the credit account's
overage allowance (`credits.services.contract_change`).
"""

from __future__ import annotations

from django.contrib import admin

from accounts.contracts.models import Contract
from config.errors import ServiceError
from credits.services import contract_change
from generations.overrides.models import PriceOverride
from generations.overrides.services import price_override_set


class _VersionedAdmin(admin.ModelAdmin):
    """Add-only: a saved version is shown read-only; a change is a new version."""

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def _service_save(self, request, form, call) -> None:
        try:
            form.instance = call()
        except ServiceError as exc:
            # Rare: the form's model validation already refuses what the service would.
            self.message_user(request, f"Nothing saved: {exc.detail}", level="error")


@admin.register(Contract)
class ContractAdmin(_VersionedAdmin):
    list_display = (
        "organization",
        "version",
        "starts_at",
        "ends_at",
        "credits_per_period",
        "overage_price_usd",
        "overage_cap",
        "created_by",
        "reason",
        "created_at",
    )
    list_filter = ("starts_at",)
    search_fields = ("organization__slug", "organization__name", "reason")
    autocomplete_fields = ("organization",)
    fields = (
        "organization",
        "starts_at",
        "ends_at",
        "credits_per_period",
        "overage_price_usd",
        "overage_cap",
        "notes",
        "reason",
    )

    def save_model(self, request, obj, form, change) -> None:
        c = form.cleaned_data
        self._service_save(
            request,
            form,
            lambda: contract_change(
                organization=c["organization"],
                actor=request.user,
                reason=c["reason"],
                starts_at=c["starts_at"],
                ends_at=c["ends_at"],
                credits_per_period=c["credits_per_period"],
                overage_price_usd=c["overage_price_usd"],
                overage_cap=c["overage_cap"],
                notes=c["notes"],
            ),
        )


@admin.register(PriceOverride)
class PriceOverrideAdmin(_VersionedAdmin):
    list_display = (
        "organization",
        "model",
        "credits",
        "discount_percent",
        "effective_from",
        "created_by",
        "reason",
    )
    list_filter = ("model",)
    search_fields = ("organization__slug", "organization__name", "reason")
    autocomplete_fields = ("organization",)
    fields = ("organization", "model", "credits", "discount_percent", "effective_from", "reason")

    def save_model(self, request, obj, form, change) -> None:
        c = form.cleaned_data
        self._service_save(
            request,
            form,
            lambda: price_override_set(
                organization=c["organization"],
                model=c["model"],
                actor=request.user,
                reason=c["reason"],
                credits=c["credits"],
                discount_percent=c["discount_percent"],
                effective_from=c["effective_from"],
            ),
        )
