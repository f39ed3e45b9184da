"""The job history: filters (status, model, dates) as a plain GET form, keyset pagination
(`config.web.paging`) with newer/older links; htmx requests get the panel fragment back."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlencode

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from accounts.tenancy import tenant_scoped
from config.web.decorators import organization_required
from config.web.http import is_partial
from config.web.paging import decode_cursor, encode_cursor, keyset_page
from credits.selectors import datetime_at_midnight
from generations import selectors
from generations.forms import JobFilterForm
from generations.models import AIModel, Job
from generations.views._common import job_view

PAGE_SIZE = 50


def _filter_models(organization):
    """Models to filter by: the active catalog and every model the organization has used."""
    used = Job.objects.filter(organization=organization).values("model_id")
    return AIModel.objects.filter(Q(is_active=True) | Q(pk__in=used)).order_by("name", "slug")


def _jobs_url(params: dict[str, str]) -> str:
    query = urlencode(params)
    return reverse("generations:jobs") + (f"?{query}" if query else "")


@organization_required
@tenant_scoped
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
