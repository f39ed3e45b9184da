"""The generate page: the model picker with prices, a params form built from the model's JSON
Schema, the submission (a plain POST followed by a redirect, or the workspace fragment for htmx)
and a refusal from the services shown as a message at the top of the form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from accounts.tenancy import tenant_scoped
from config.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerBusy,
    ServiceError,
    ValidationError,
)
from config.web.decorators import organization_required
from config.web.formats import format_credits
from config.web.http import is_partial
from credits.selectors import balance_summary, datetime_at_midnight, fair_use_status
from generations import selectors, services
from generations.forms import ParamsForm, SubmitForm
from generations.models import Job
from generations.services.submission import job_seed_drawn
from generations.views._common import duration, generate_url, job_view

IDEMPOTENCY_PREFIX = "web-form:"
KEPT_PARAMS = ("prompt", "seed")  # params a GET link may pre-fill (`params-<name>`)


# --- Refusals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A submission the services refused, as the message at the top of the form."""

    code: str
    title: str
    message: str
    link_url: str = ""
    link_text: str = ""
    retry_after: int | None = None


def _refusal(exc: ServiceError, *, leftover: list[str] | None = None) -> Refusal:
    extra = exc.extra or {}
    if isinstance(exc, InsufficientCredits):
        required, available = extra.get("required"), extra.get("available")
        cap = extra.get("overage_cap")
        if required is not None and available is not None:
            message = (
                f"This generation needs {format_credits(required)} credits and "
                f"{format_credits(available)} are available"
            )
            if cap and Decimal(str(cap)) > 0:
                message += f" (your plan's overage allowance of {format_credits(cap)} is used up)"
            message += "."
        else:
            message = exc.detail
        return Refusal(
            exc.code,
            "Not enough credits",
            message + " Nothing was charged.",
            reverse("credits:overview"),
            "See your credits",
        )
    if isinstance(exc, QuotaExceeded):
        reason, limit = extra.get("reason"), extra.get("limit_value")
        if reason == "daily_generation_cap":
            tomorrow = datetime_at_midnight(timezone.now().astimezone(UTC).date()) + timedelta(
                days=1
            )
            left = duration((tomorrow - timezone.now()).total_seconds())
            return Refusal(
                exc.code,
                "Daily generation limit reached",
                f"Your plan allows {limit} generations a day. The count resets at midnight UTC "
                f"(in {left}). Nothing was charged.",
                reverse("credits:overview"),
                "See your plan and credits",
            )
        if reason == "concurrent_jobs":
            return Refusal(
                exc.code,
                "Too many jobs at once",
                f"Your plan runs up to {limit} job{'s' if limit != 1 else ''} at a time. Wait "
                "for one to finish, or cancel a queued one, then submit again. Nothing was "
                "charged.",
                reverse("generations:jobs") + "?status=queued",
                "See queued jobs",
            )
        if str(extra.get("limit", "")).startswith("budget:"):
            # The detail names the budget, its limit, its use and its reset (credits.budgets).
            return Refusal(
                exc.code,
                "Budget reached",
                f"{exc.detail} Nothing was charged. An owner or admin can raise the budget.",
                reverse("credits:budgets"),
                "See budgets",
            )
        return Refusal(exc.code, "Quota reached", f"{exc.detail} Nothing was charged.")
    if isinstance(exc, ServerBusy | RateLimited):
        try:
            retry = int(exc.headers.get("Retry-After", ""))
        except ValueError:
            retry = None
        title = "The GPUs are busy" if isinstance(exc, ServerBusy) else "Too many requests"
        message = exc.detail
        if retry is not None and "Retry in" not in message:
            message += f" Try again in {retry} seconds."
        return Refusal(exc.code, title, f"{message} Nothing was charged.", retry_after=retry)
    if isinstance(exc, IdempotencyConflict):
        return Refusal(
            exc.code,
            "This form was already submitted",
            "It was sent before with different settings, so it was not run again. Check the "
            "settings below and press Generate to start a new job.",
        )
    if isinstance(exc, ValidationError):
        if exc.errors.get("model"):
            return Refusal(
                exc.code,
                "This model can't run right now",
                f"{exc.detail} Pick another model.",
            )
        if not leftover:  # everything went next to the inputs
            return Refusal(exc.code, "Check the parameters", "Fix the fields marked below.")
        return Refusal(exc.code, "Check the parameters", " ".join(leftover))
    if isinstance(exc, PermissionDenied):
        if str(extra.get("limit", "")).startswith("entitlement:"):
            # generations.entitlements: what the plan does not include; the billing page's
            # comparison table shows which plan does.
            return Refusal(
                exc.code,
                "Not included in your plan",
                f"{exc.detail} Nothing was charged.",
                reverse("credits:billing") + "#entitlements",
                "Compare plans",
            )
        return Refusal(exc.code, "Not allowed", exc.detail)
    return Refusal(exc.code, exc.title, exc.detail)


# --- Generate page ----------------------------------------------------------------------------


def _pick(catalog, slug: str | None):
    for entry in catalog:
        if entry.slug == slug:
            return entry
    return catalog[0] if catalog else None


def _render_generate(
    request: HttpRequest,
    *,
    catalog,
    selected,
    job: Job | None = None,
    params_form: ParamsForm | None = None,
    token: str | None = None,
    refusal: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    organization = request.organization
    if params_form is None and selected is not None:
        initial = {}
        if job is not None and job.model_id == selected.model.pk:
            params = dict(job.params or {})
            if job_seed_drawn(job):
                params.pop("seed")  # a random seed stays random for the next press
            initial = ParamsForm.initial_from(params, selected.params_schema)
        if request.method == "GET":
            for name in KEPT_PARAMS:  # the prompt across a model switch; a seed to reuse
                if request.GET.get(f"params-{name}"):
                    initial[name] = request.GET[f"params-{name}"]
        params_form = ParamsForm(schema=selected.params_schema, initial=initial)
    by_params = selectors.models_priced_by_params(model_ids=[e.model.pk for e in catalog])
    context = {
        "organization": organization,
        "selected_by_params": selected is not None and selected.model.pk in by_params,
        "catalog": [
            {
                "entry": entry,
                "by_params": entry.model.pk in by_params,
                "gpu_type": entry.model.pool.gpu_type,
                "url": generate_url(model=entry.slug, job=str(job.pk) if job else ""),
                "push_url": generate_url(model=entry.slug, job=str(job.pk) if job else ""),
                "selected": selected is not None and entry.slug == selected.slug,
            }
            for entry in catalog
        ],
        "selected": selected,
        "params_form": params_form,
        "submit_form": SubmitForm(
            initial={
                "model": selected.slug if selected else "",
                "form_token": token or SubmitForm.new_token(),
                "job": str(job.pk) if job is not None else "",
            }
        ),
        "job": job_view(job) if job is not None else None,
        "refusal": refusal,
        "summary": balance_summary(organization=organization),
        # A fair-use unlimited plan: no credit prices, its cap and throttle state instead.
        "fair_use": fair_use_status(organization=organization),
        "generate_url": reverse("generations:generate"),
        "partial": is_partial(request),
    }
    template = (
        "generations/partials/workspace.html"
        if is_partial(request)
        else "generations/generate.html"
    )
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_http_methods(["GET", "HEAD", "POST"])
@organization_required
@tenant_scoped
def generate(request: HttpRequest) -> HttpResponse:
    catalog = selectors.models_active()
    if request.method == "POST":
        return _submit(request, catalog)
    selected = _pick(catalog, request.GET.get("model"))
    job = None
    if request.GET.get("job"):
        try:
            job = selectors.job_get(organization=request.organization, job_id=request.GET["job"])
        except NotFound:
            job = None  # a stale or foreign link: just the form
    if job is not None and not request.GET.get("model"):
        selected = _pick(catalog, job.model.slug)
    return _render_generate(request, catalog=catalog, selected=selected, job=job)


def _shown_job(request: HttpRequest, job_id) -> Job | None:
    try:
        return selectors.job_get(organization=request.organization, job_id=job_id)
    except NotFound:
        return None  # a stale or foreign id: no panel


def _submit(request: HttpRequest, catalog) -> HttpResponse:
    partial = is_partial(request)
    submit_form = SubmitForm(request.POST)
    slug = request.POST.get("model", "")
    selected = next((e for e in catalog if e.slug == slug), None)
    if selected is None:
        exc = ValidationError(
            "That model is not available any more.", errors={"model": ["Unknown."]}
        )
        return _render_generate(
            request,
            catalog=catalog,
            selected=_pick(catalog, None),
            refusal=_refusal(exc, leftover=[]),
            status=200 if partial else 400,
        )
    params_form = ParamsForm(request.POST, schema=selected.params_schema)
    token = None
    shown = None  # the job the page showed: a refusal keeps its panel (it may still run)
    if submit_form.is_valid():
        if submit_form.cleaned_data.get("form_token"):
            token = str(submit_form.cleaned_data["form_token"])
        if submit_form.cleaned_data.get("job"):
            shown = _shown_job(request, submit_form.cleaned_data["job"])
    if not params_form.is_valid():
        return _render_generate(
            request,
            catalog=catalog,
            selected=selected,
            job=shown,
            params_form=params_form,
            token=token,
            refusal=Refusal(
                "validation_error", "Check the parameters", "Fix the fields marked below."
            ),
            status=200 if partial else 400,
        )
    try:
        job, created = services.generation_submit(
            organization=request.organization,
            model_slug=selected.slug,
            params=params_form.params(),
            user=request.user,
            idempotency_key=f"{IDEMPOTENCY_PREFIX}{token}" if token else None,
        )
    except ServiceError as exc:
        leftover = None
        if isinstance(exc, ValidationError):
            # Messages about one input go next to it; the rest (or a bare detail) on top.
            leftover = params_form.add_service_errors(exc.errors) if exc.errors else [exc.detail]
            leftover = leftover or None
        if isinstance(exc, IdempotencyConflict):
            token = None  # a fresh form: the next press is a new request
        response = _render_generate(
            request,
            catalog=catalog,
            selected=selected,
            job=shown,
            params_form=params_form,
            token=token,
            refusal=_refusal(exc, leftover=leftover),
            status=200 if partial else exc.status_code,
        )
        if not partial:
            for name, value in (exc.headers or {}).items():
                response[name] = value
        return response

    target = generate_url(model=selected.slug, job=str(job.pk))
    if not created:
        messages.info(request, "This form was already submitted: here is the job it started.")
    if not partial:
        return redirect(target)
    response = _render_generate(request, catalog=catalog, selected=selected, job=job)
    response["HX-Push-Url"] = target
    return response
