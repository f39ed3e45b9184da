"""Web views of generations: the generate page (model picker with prices, a params form built
from the model's JSON Schema, a job panel that follows the job through htmx polling), the job
history (filters, keyset pagination) and a job's detail page (status log, ledger entries).

Thin, like accounts.views and credits.views: submission and cancel go through
`generations.services` (the same calls as the API), reads through the org-scoped
`generations.selectors`; another tenant's job is a 404. Every page works without JavaScript:
the generate form is a plain POST followed by a redirect, the history's filters and page links
are plain GETs; htmx requests get the page fragment back instead.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

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
from config.web.http import is_partial, safe_next
from config.web.paging import decode_cursor, encode_cursor, keyset_page
from credits import selectors as credit_selectors
from credits.display import entry_row
from credits.selectors import balance_summary, datetime_at_midnight
from generations import selectors, services
from generations.forms import JobFilterForm, ParamsForm, SubmitForm
from generations.models import AIModel, Job, JobStatus

PAGE_SIZE = 50
IDEMPOTENCY_PREFIX = "web-form:"
POLL_FAST_S = 1
POLL_SLOW_S = 5
POLL_FAST_FOR = timedelta(minutes=2)  # after that a job still waiting is polled less often


def _job_or_404(request: HttpRequest, job_id) -> Job:
    try:
        return selectors.job_get(organization=request.organization, job_id=job_id)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


# --- How a job reads ------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


STEPS = ("queued", "running", "done")
STATUS_TEXT = {
    JobStatus.QUEUED: "Waiting for a GPU",
    JobStatus.RUNNING: "Generating",
    JobStatus.SUCCEEDED: "Done",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
}


@dataclass(frozen=True)
class JobView:
    """A job with what the templates show about it, computed once."""

    job: Job
    status_text: str
    step: int  # 0 queued, 1 running, 2 finished
    polling: bool
    poll_every: int
    wait_text: str
    run_text: str
    elapsed_text: str
    charged_text: str
    charge_note: str
    result_items: list[tuple[str, str]]
    result_json: str
    preview_type: str
    preview_label: str
    preview_hue: int
    gpu_type: str

    @property
    def cancellable(self) -> bool:
        return self.job.status == JobStatus.QUEUED

    @property
    def detail_url(self) -> str:
        return reverse("generations:job", args=[self.job.pk])

    @property
    def generate_url(self) -> str:
        """The generate page showing this job, its form filled with the job's settings."""
        return _generate_url(model=self.job.model.slug, job=str(self.job.pk))


def job_view(job: Job, *, now: datetime | None = None) -> JobView:
    now = now or timezone.now()
    status = job.status
    terminal = job.is_terminal
    if status == JobStatus.QUEUED:
        step = 0
    elif status == JobStatus.RUNNING:
        step = 1
    else:
        step = 2
    wait = _between(job.created_at, job.started_at)
    if wait is None and not terminal:
        wait = _between(job.created_at, now)
    run = _between(job.started_at, job.finished_at)
    elapsed = _between(job.started_at, now) if status == JobStatus.RUNNING else None

    held = job.credits_held
    charged = job.credits_charged
    if status == JobStatus.SUCCEEDED:
        charged_text = format_credits(charged)
        charge_note = "captured from the hold" if not job.cached else "served from the cache"
    elif terminal:
        charged_text = format_credits(charged or Decimal(0))
        if charged:
            charge_note = "the request caused the failure"
        elif held:
            charge_note = f"{format_credits(held)} released back to you"
        else:
            charge_note = ""
    else:
        charged_text = "—"
        charge_note = "only if it succeeds"

    result = job.result
    items: list[tuple[str, str]] = []
    result_json = ""
    preview_type = preview_label = ""
    hue = 210
    if isinstance(result, dict):
        preview_type = str(result.get("type") or "output")
        labels = {
            "type": "Type",
            "seed": "Seed",
            "service_time_s": "GPU time",
            "cold_start_s": "Cold start",
            "url": "Output",
        }
        for key, label in labels.items():
            if key not in result:
                continue
            value = result[key]
            if key.endswith("_s") and isinstance(value, int | float):
                value = _duration(float(value))
            items.append((label, str(value)))
        for key, value in result.items():
            if key not in labels:
                items.append((key.replace("_", " ").capitalize(), str(value)))
        seed = result.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            hue = (seed * 137) % 360
        preview_label = f"Placeholder for the {preview_type} output" + (
            f", seed {seed}" if seed is not None else ""
        )
    elif result is not None:
        result_json = json.dumps(result, indent=2, ensure_ascii=False)

    age = now - job.created_at
    return JobView(
        job=job,
        status_text=STATUS_TEXT.get(status, status),
        step=step,
        polling=not terminal,
        poll_every=POLL_FAST_S if age < POLL_FAST_FOR else POLL_SLOW_S,
        wait_text=_duration(wait),
        run_text=_duration(run),
        elapsed_text=_duration(elapsed),
        charged_text=charged_text,
        charge_note=charge_note,
        result_items=items,
        result_json=result_json,
        preview_type=preview_type,
        preview_label=preview_label,
        preview_hue=hue,
        gpu_type=(job.model.pool.gpu_type if job.model.pool_id else ""),
    )


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
        reason, limit = extra.get("reason"), extra.get("limit")
        if reason == "daily_generation_cap":
            tomorrow = datetime_at_midnight(timezone.now().astimezone(UTC).date()) + timedelta(
                days=1
            )
            left = _duration((tomorrow - timezone.now()).total_seconds())
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
        return Refusal(exc.code, "Not allowed", exc.detail)
    return Refusal(exc.code, exc.title, exc.detail)


# --- Generate page ----------------------------------------------------------------------------


def _pick(catalog, slug: str | None):
    for entry in catalog:
        if entry.slug == slug:
            return entry
    return catalog[0] if catalog else None


def _generate_url(**params) -> str:
    query = urlencode({k: v for k, v in params.items() if v})
    return reverse("generations:generate") + (f"?{query}" if query else "")


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
            initial = ParamsForm.initial_from(job.params, selected.params_schema)
        if request.method == "GET" and request.GET.get("params-prompt"):
            initial["prompt"] = request.GET["params-prompt"]  # kept across a model switch
        params_form = ParamsForm(schema=selected.params_schema, initial=initial)
    context = {
        "organization": organization,
        "catalog": [
            {
                "entry": entry,
                "gpu_type": entry.model.pool.gpu_type,
                "url": _generate_url(model=entry.slug, job=str(job.pk) if job else ""),
                "push_url": _generate_url(model=entry.slug, job=str(job.pk) if job else ""),
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
            }
        ),
        "job": job_view(job) if job is not None else None,
        "refusal": refusal,
        "summary": balance_summary(organization=organization),
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
    if submit_form.is_valid() and submit_form.cleaned_data.get("form_token"):
        token = str(submit_form.cleaned_data["form_token"])
    if not params_form.is_valid():
        return _render_generate(
            request,
            catalog=catalog,
            selected=selected,
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
            params_form=params_form,
            token=token,
            refusal=_refusal(exc, leftover=leftover),
            status=200 if partial else exc.status_code,
        )
        if not partial:
            for name, value in (exc.headers or {}).items():
                response[name] = value
        return response

    target = _generate_url(model=selected.slug, job=str(job.pk))
    if not created:
        messages.info(request, "This form was already submitted: here is the job it started.")
    if not partial:
        return redirect(target)
    response = _render_generate(request, catalog=catalog, selected=selected, job=job)
    response["HX-Push-Url"] = target
    return response


# --- Job panel, status polling, cancel --------------------------------------------------------


def _detail_context(job: Job) -> dict:
    events = list(job.events.all())
    previous = None
    rows = []
    for event in events:
        since = _between(previous.at, event.at) if previous is not None else None
        rows.append({"event": event, "since": f"+{_duration(since)}" if since is not None else ""})
        previous = event
    entries = []
    if job.hold_id:
        entries = [entry_row(e) for e in credit_selectors.entries_of_hold(hold_id=job.hold_id)]
    return {"events": rows, "entries": entries, "hold": job.hold if job.hold_id else None}


def _job_fragment(request: HttpRequest, job: Job, *, view: str, **extra) -> HttpResponse:
    context = {"job": job_view(job), **extra}
    if view == "detail":
        context.update(_detail_context(job))
        template = "generations/partials/job_detail_body.html"
    else:
        template = "generations/partials/job_panel.html"
        if job.is_terminal:
            # A released hold makes credits available again: refresh the page's figure too.
            context["available_oob"] = balance_summary(organization=request.organization).available
    response = render(request, template, context)
    add_never_cache_headers(response)
    return response


@organization_required
def job_status(request: HttpRequest, job_id) -> HttpResponse:
    """The job panel (or the detail page's body with `?view=detail`) as it is now. htmx polls
    it while the job is queued or running; a finished job's fragment has no trigger, so
    polling stops with it."""
    job = _job_or_404(request, job_id)
    return _job_fragment(request, job, view=request.GET.get("view", "panel"))


@require_POST
@organization_required
def job_cancel(request: HttpRequest, job_id) -> HttpResponse:
    job = _job_or_404(request, job_id)
    error = ""
    try:
        job = services.generation_cancel(job=job, actor=request.user)
    except ValidationError:
        job.refresh_from_db()
        error = f"It can't be cancelled any more: it is {job.get_status_display().lower()}."
    if is_partial(request):
        return _job_fragment(
            request, job, view=request.POST.get("view", "panel"), cancel_error=error
        )
    if error:
        messages.error(request, error)
    else:
        released = format_credits(job.credits_held)
        messages.success(request, f"Cancelled. {released} credits were released.")
    return redirect(safe_next(request, reverse("generations:job", args=[job.pk])))


@organization_required
def job_detail(request: HttpRequest, job_id) -> HttpResponse:
    job = _job_or_404(request, job_id)
    context = {
        "organization": request.organization,
        "job": job_view(job),
        **_detail_context(job),
    }
    response = render(request, "generations/job_detail.html", context)
    add_never_cache_headers(response)
    return response


# --- Job history ------------------------------------------------------------------------------


def _filter_models(organization):
    """Models to filter by: the active catalog and every model the organization has used."""
    used = Job.objects.filter(organization=organization).values("model_id")
    return AIModel.objects.filter(Q(is_active=True) | Q(pk__in=used)).order_by("name", "slug")


def _jobs_url(params: dict[str, str]) -> str:
    query = urlencode(params)
    return reverse("generations:jobs") + (f"?{query}" if query else "")


@organization_required
def job_list(request: HttpRequest) -> HttpResponse:
    organization = request.organization
    form = JobFilterForm(request.GET or None, models=_filter_models(organization))
    data: dict = {}
    problems = []
    if form.is_bound:
        form.is_valid()
        data = form.cleaned_data
        if form.errors:
            problems.append("Some filters were not valid and were ignored; see below.")
            for name in form.errors:
                if name in form.fields:
                    form.fields[name].widget.attrs.update(
                        {"aria-invalid": "true", "aria-describedby": f"{name}-error"}
                    )
    status, model = data.get("status") or "", data.get("model") or ""
    date_from, date_to = data.get("date_from"), data.get("date_to")
    qs = selectors.job_list(organization=organization, status=status or None, model=model or None)
    if date_from:
        qs = qs.filter(created_at__gte=datetime_at_midnight(date_from))
    if date_to:
        qs = qs.filter(created_at__lt=datetime_at_midnight(date_to) + timedelta(days=1))
    qs = qs.select_related("model__pool")

    before = after = None
    if request.GET.get("before"):
        before = decode_cursor(request.GET["before"], pk_type=uuid.UUID)
        if before is None:
            problems.append("That page link is not valid; showing the newest jobs.")
    elif request.GET.get("after"):
        after = decode_cursor(request.GET["after"], pk_type=uuid.UUID)
        if after is None:
            problems.append("That page link is not valid; showing the newest jobs.")
    page = keyset_page(qs, before=before, after=after, limit=PAGE_SIZE)
    params = {
        "status": status,
        "model": model,
        "date_from": date_from.isoformat() if date_from else "",
        "date_to": date_to.isoformat() if date_to else "",
    }
    params = {k: v for k, v in params.items() if v}
    jobs = page.items
    newer_url = older_url = None
    if page.has_newer and jobs:
        newer_url = _jobs_url({**params, "after": encode_cursor(jobs[0])})
    if page.has_older:
        older_url = _jobs_url({**params, "before": encode_cursor(jobs[-1])})
    now = timezone.now()
    context = {
        "organization": organization,
        "form": form,
        "filtered": bool(params),
        "problems": problems,
        "rows": [job_view(job, now=now) for job in jobs],
        "newer_url": newer_url,
        "older_url": older_url,
        "newest_url": _jobs_url(params) if page.has_newer else None,
        "clear_url": reverse("generations:jobs"),
        "page_size": PAGE_SIZE,
    }
    template = (
        "generations/partials/jobs_panel.html" if is_partial(request) else "generations/jobs.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
