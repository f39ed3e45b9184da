"""The billing page's "Resume paid generation" button (owners and admins)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.errors import PermissionDenied
from config.web.decorators import organization_required
from credits.velocity import services


@require_POST
@organization_required
def velocity_resume(request: HttpRequest) -> HttpResponseRedirect:
    try:
        services.velocity_resume(organization=request.organization, actor=request.user)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    hours = services.confirm_hours()
    messages.success(
        request, f"Paid generation resumed. The spend-rate check is off for {hours} hours."
    )
    return HttpResponseRedirect(reverse("credits:billing"), status=303)
