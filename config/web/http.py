"""Request helpers of the web UI: htmx fragments, safe `next` redirects, the client's address."""

from __future__ import annotations

from django.conf import settings
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


def client_address(request: HttpRequest) -> str:
    """The client's IP address. Behind `TRUSTED_PROXY_COUNT` proxies that each append the
    address they saw to X-Forwarded-For, it is the entry the outermost trusted proxy appended
    (what a client puts in the header itself is never trusted); with 0 it is REMOTE_ADDR."""
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR") or "unknown"
