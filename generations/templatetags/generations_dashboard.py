"""Dashboard helpers of generations: the organization's latest jobs, for the accounts dashboard
(`{% load generations_dashboard %}{% recent_jobs as jobs %}`), which cannot import this app."""

from __future__ import annotations

from django import template

from generations import selectors

register = template.Library()

RECENT_JOBS = 5


@register.simple_tag(takes_context=True)
def recent_jobs(context, limit: int = RECENT_JOBS) -> list:
    """The active organization's last `limit` jobs, newest first (none without one)."""
    organization = getattr(context.get("request"), "organization", None)
    if organization is None:
        return []
    return list(selectors.job_list(organization=organization).select_related("model")[:limit])
