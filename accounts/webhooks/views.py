"""Web pages of outbound webhooks: list and create endpoints (the secret is shown once), an
endpoint's deliveries with their attempts, resend one, rotate the secret, send a test event,
enable/disable, delete. Every member may look; owners and admins act (the services check).
Another organization's endpoint is a 404."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.webhooks import selectors, services
from accounts.webhooks.forms import WebhookEndpointForm
from config.errors import NotFound, PermissionDenied, ValidationError
from config.web.decorators import organization_required
from config.web.forms import add_service_errors

DELIVERIES_SHOWN = 50


def _endpoint(request: HttpRequest, endpoint_id: int):
    try:
        return selectors.webhook_endpoint_get(
            organization=request.organization, endpoint_id=endpoint_id
        )
    except NotFound as exc:
        raise Http404(exc.detail) from exc


def _shown_once(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)
    return response


def _list_context(request: HttpRequest, form: WebhookEndpointForm | None = None) -> dict:
    can_manage = request.membership.can_manage
    return {
        "endpoints": selectors.webhook_endpoint_list(organization=request.organization),
        "form": form if form is not None else (WebhookEndpointForm() if can_manage else None),
        "can_manage": can_manage,
    }


@organization_required
def endpoint_list(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "accounts/webhooks/list.html", _list_context(request))
    form = WebhookEndpointForm(request.POST)
    if form.is_valid():
        try:
            endpoint, secret = services.webhook_endpoint_create(
                organization=request.organization,
                actor=request.user,
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
            )
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.detail) from exc
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            context = _detail_context(request, endpoint)
            context["new_secret"] = secret
            return _shown_once(render(request, "accounts/webhooks/detail.html", context))
    return render(request, "accounts/webhooks/list.html", _list_context(request, form))


def _detail_context(request: HttpRequest, endpoint) -> dict:
    deliveries = selectors.webhook_delivery_list(
        organization=request.organization, endpoint=endpoint
    )[:DELIVERIES_SHOWN]
    return {
        "endpoint": endpoint,
        "deliveries": deliveries,
        "can_manage": request.membership.can_manage,
    }


@organization_required
def endpoint_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    return render(request, "accounts/webhooks/detail.html", _detail_context(request, endpoint))


def _act(request: HttpRequest, action, *, endpoint_id: int, success: str) -> HttpResponse:
    try:
        action()
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    except ValidationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, success)
    return redirect("webhooks:detail", endpoint_id=endpoint_id)


@require_POST
@organization_required
def endpoint_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    try:
        endpoint, secret = services.webhook_endpoint_rotate_secret(
            endpoint=endpoint, actor=request.user
        )
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    context = _detail_context(request, endpoint)
    context["new_secret"] = secret
    context["rotated"] = True
    return _shown_once(render(request, "accounts/webhooks/detail.html", context))


@require_POST
@organization_required
def endpoint_test(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    return _act(
        request,
        lambda: services.webhook_test_send(endpoint=endpoint, actor=request.user),
        endpoint_id=endpoint.pk,
        success="A test event is on its way.",
    )


@require_POST
@organization_required
def endpoint_enabled(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    enable = request.POST.get("enabled") == "1"
    return _act(
        request,
        lambda: services.webhook_endpoint_update(
            endpoint=endpoint, actor=request.user, enabled=enable
        ),
        endpoint_id=endpoint.pk,
        success="Endpoint enabled." if enable else "Endpoint disabled.",
    )


@require_POST
@organization_required
def endpoint_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    try:
        services.webhook_endpoint_delete(endpoint=endpoint, actor=request.user)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.detail) from exc
    messages.success(request, "Endpoint deleted.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("webhooks:list"))
    return redirect("webhooks:list")


@require_POST
@organization_required
def delivery_resend(request: HttpRequest, delivery_id: int) -> HttpResponse:
    try:
        delivery = selectors.webhook_delivery_get(
            organization=request.organization, delivery_id=delivery_id
        )
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    return _act(
        request,
        lambda: services.webhook_delivery_resend(delivery=delivery, actor=request.user),
        endpoint_id=delivery.endpoint_id,
        success="The event will be sent again.",
    )
