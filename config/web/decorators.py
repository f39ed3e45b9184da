"""View decorators of the web UI (the API has DRF permission classes instead)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest
from django.shortcuts import redirect


def organization_required(view):
    """Logged in and with an active organization (`request.organization`, set by the
    organization middleware); users without one are sent to create one."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if getattr(request, "organization", None) is None:
            return redirect("organization_create")
        return view(request, *args, **kwargs)

    return wrapped


def staff_required(view):
    """Staff only: anonymous → login (and back); logged in but not staff → 404."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (user.is_active and user.is_staff):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapped
