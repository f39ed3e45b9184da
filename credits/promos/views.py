"""The "Redeem a code" form of the billing page (owners and admins): POST, then back to the
page with a message (granted, already redeemed, not valid, or throttled)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.errors import PermissionDenied, ServiceError
from config.web.decorators import organization_required
from config.web.formats import format_credits
from credits.promos import services


@require_POST
@organization_required
def promo_redeem(request: HttpRequest) -> HttpResponseRedirect:
    membership = getattr(request, "membership", None)
    if membership is None or not membership.can_manage:
        raise DjangoPermissionDenied(services.MANAGERS_ONLY)
    try:
        redemption = services.promo_redeem(
            organization=request.organization,
            code=request.POST.get("code", "")[:100],
            actor=request.user,
        )
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        grant = redemption.grant
        until = f", usable until {grant.expires_at:%-d %b %Y}" if grant.expires_at else ""
        messages.success(
            request, f"Code redeemed: {format_credits(grant.amount)} credits added{until}."
        )
    return HttpResponseRedirect(reverse("credits:billing") + "#promo", status=303)
