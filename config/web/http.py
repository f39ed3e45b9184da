"""Request helpers of the web UI: htmx fragments and safe `next` redirects."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def is_partial(request: HttpRequest) -> bool:
    """An htmx request that swaps a fragment in (not a history restore, not a boosted page)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request and not htmx.boosted


def safe_next(request: HttpRequest, default: str) -> str:
    """The `next` parameter (POST, then GET) when it stays on this site, else `default`."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default
