"""A job's pages: the panel the generate page polls through htmx (`job_status`; a finished
job's fragment has no trigger, so polling stops with it), the detail page (status log, ledger
entries of its hold) and cancel. Another tenant's job is a 404."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from accounts.tenancy import tenant_scoped
from config.errors import NotFound, ValidationError
from config.web.decorators import organization_required
from config.web.formats import format_credits
from config.web.http import is_partial, safe_next
from credits import selectors as credit_selectors
from credits.display import entry_row
from credits.selectors import balance_summary
from generations import selectors, services
from generations.models import Job
from generations.views._common import between, duration, job_view


def _job_or_404(request: HttpRequest, job_id) -> Job:
    try:
        return selectors.job_get(organization=request.organization, job_id=job_id)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


def _detail_context(job: Job) -> dict:
    events = list(job.events.all())
    previous = None
    rows = []
    for event in events:
        since = between(previous.at, event.at) if previous is not None else None
        rows.append({"event": event, "since": f"+{duration(since)}" if since is not None else ""})
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
@tenant_scoped
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
        services.generation_cancel(job=job, actor=request.user)
    except ValidationError:
        error = "It can't be cancelled any more: it is {status}."
    # Read it again: the hold (and its status) the cancel released, not the one loaded before.
    job = _job_or_404(request, job_id)
    if error:
        error = error.format(status=job.get_status_display().lower())
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
@tenant_scoped
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
