"""Staff contracts page, mounted at /staff/contracts/ (this module is its URLconf too).

Lists every organization's contract (latest version, in force or not) and its price overrides
in force, with two forms (POST + CSRF): a new contract version and a new price override. Each
is a new version through the services (`credits.services.contract_change`,
`generations.overrides.services.price_override_set`) with the acting staff user and a reason;
the admin shows the full history. Staff only (anonymous → login, others → 404).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.contracts.models import Contract
from accounts.models import Organization
from config.errors import ServiceError
from config.web.decorators import staff_required
from credits.services import contract_change
from generations.models import AIModel
from generations.overrides.models import PriceOverride
from generations.overrides.selectors import overrides_current
from generations.overrides.services import price_override_set

CREDITS = {"max_digits": 18, "decimal_places": 3, "min_value": 0, "required": False}


class ContractForm(forms.Form):
    organization = forms.SlugField(max_length=50)
    starts_at = forms.DateTimeField(required=False, help_text="Empty: now.")
    ends_at = forms.DateTimeField(required=False, help_text="Empty: open-ended.")
    credits_per_period = forms.DecimalField(**CREDITS)
    overage_cap = forms.DecimalField(**CREDITS)
    overage_price_usd = forms.DecimalField(
        max_digits=18, decimal_places=6, min_value=0, required=False
    )
    notes = forms.CharField(required=False, max_length=2000, widget=forms.Textarea)
    reason = forms.CharField(max_length=255)


class OverrideForm(forms.Form):
    organization = forms.SlugField(max_length=50)
    model = forms.SlugField(max_length=100, required=False, help_text="Empty: all models.")
    credits = forms.DecimalField(max_digits=18, decimal_places=3, min_value=0, required=False)
    discount_percent = forms.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, required=False
    )
    reason = forms.CharField(max_length=255)


def _rows() -> list[dict]:
    """One row per organization with a contract or an override."""
    now = timezone.now()
    org_ids = set(Contract.objects.values_list("organization_id", flat=True)) | set(
        PriceOverride.objects.values_list("organization_id", flat=True)
    )
    rows = []
    for org in Organization.objects.filter(pk__in=org_ids).order_by("slug"):
        contract = Contract.objects.filter(organization=org).order_by("-version").first()
        overrides = overrides_current(organization_id=org.pk, at=now)
        rows.append(
            {
                "organization": org,
                "contract": contract,
                "in_force": contract is not None and contract.in_force(now),
                "overrides": overrides,
            }
        )
    return rows


def _render(request, *, contract_form=None, override_form=None, status=200) -> HttpResponse:
    context = {
        "rows": _rows(),
        "contract_form": contract_form or ContractForm(auto_id="contract-%s"),
        "override_form": override_form or OverrideForm(auto_id="override-%s"),
        "models": AIModel.objects.filter(is_active=True).order_by("slug"),
    }
    return render(request, "staff/contracts.html", context, status=status)


@staff_required
def contracts_index(request: HttpRequest) -> HttpResponse:
    return _render(request)


def _organization(form: forms.Form) -> Organization | None:
    org = Organization.objects.filter(slug=form.cleaned_data["organization"]).first()
    if org is None:
        form.add_error("organization", "No organization with this slug.")
    return org


@staff_required
@require_POST
def contract_save(request: HttpRequest) -> HttpResponse:
    form = ContractForm(request.POST, auto_id="contract-%s")
    if not form.is_valid() or (org := _organization(form)) is None:
        messages.error(request, "Nothing saved: check the contract form.")
        return _render(request, contract_form=form, status=400)
    c = form.cleaned_data
    try:
        contract = contract_change(
            organization=org,
            actor=request.user,
            reason=c["reason"],
            starts_at=c["starts_at"],
            ends_at=c["ends_at"],
            credits_per_period=c["credits_per_period"],
            overage_cap=c["overage_cap"],
            overage_price_usd=c["overage_price_usd"],
            notes=c["notes"],
        )
    except ServiceError as exc:
        messages.error(request, f"Nothing saved: {exc.detail}")
        return _render(request, contract_form=form, status=400)
    messages.success(request, f"{org.slug}: contract version {contract.version} saved.")
    return redirect(reverse("staff_contracts:index") + f"#org-{org.slug}")


@staff_required
@require_POST
def override_save(request: HttpRequest) -> HttpResponse:
    form = OverrideForm(request.POST, auto_id="override-%s")
    if not form.is_valid() or (org := _organization(form)) is None:
        messages.error(request, "Nothing saved: check the price override form.")
        return _render(request, override_form=form, status=400)
    c = form.cleaned_data
    model = None
    if c["model"]:
        model = AIModel.objects.filter(slug=c["model"]).first()
        if model is None:
            form.add_error("model", "No model with this slug.")
            messages.error(request, "Nothing saved: check the price override form.")
            return _render(request, override_form=form, status=400)
    try:
        row = price_override_set(
            organization=org,
            model=model,
            actor=request.user,
            reason=c["reason"],
            credits=c["credits"],
            discount_percent=c["discount_percent"],
        )
    except ServiceError as exc:
        messages.error(request, f"Nothing saved: {exc.detail}")
        return _render(request, override_form=form, status=400)
    target = model.slug if model is not None else "all models"
    messages.success(request, f"{org.slug}, {target}: {row.terms} from now.")
    return redirect(reverse("staff_contracts:index") + f"#org-{org.slug}")


app_name = "staff_contracts"

urlpatterns = [
    path("", contracts_index, name="index"),
    path("contract/", contract_save, name="contract"),
    path("override/", override_save, name="override"),
]
