"""The billing page's "Start a free trial" and "End trial now" buttons (owners): POST, then
back to the page with a message."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.models import Role
from config.errors import PermissionDenied, ServiceError
from config.web.decorators import organization_required
from config.web.formats import format_credits
from credits.trials import services


@require_POST
@organization_required
def trial_start(request: HttpRequest) -> HttpResponseRedirect:
    membership = getattr(request, "membership", None)
    if membership is None or membership.role != Role.OWNER:
        raise DjangoPermissionDenied(services.OWNERS_ONLY)
    try:
        plan_trial_id = int(request.POST.get("plan_trial", ""))
    except ValueError:
        plan_trial_id = 0
    try:
        trial = services.trial_start(
            organization=request.organization, plan_trial_id=plan_trial_id, actor=request.user
        )
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            f"Your free trial of {trial.plan_trial.plan.name} has started: "
            f"{format_credits(trial.grant.amount)} credits, until {trial.ends_at:%-d %b %Y}.",
        )
    return HttpResponseRedirect(reverse("credits:billing") + "#trial", status=303)


@require_POST
@organization_required
def trial_end(request: HttpRequest) -> HttpResponseRedirect:
    """ "End trial now" (owners): back to the free plan at once."""
    membership = getattr(request, "membership", None)
    if membership is None or membership.role != Role.OWNER:
        raise DjangoPermissionDenied(services.OWNERS_ONLY_END)
    try:
        trial = services.trial_end(organization=request.organization, actor=request.user)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    except ServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            f"Your free trial of {trial.plan_trial.plan.name} has ended: "
            "your organization is on the free plan.",
        )
    return HttpResponseRedirect(reverse("credits:billing") + "#trial", status=303)
