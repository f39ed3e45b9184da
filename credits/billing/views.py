"""The Stripe webhook endpoint: POST /stripe/webhook/ (no session, no CSRF token: Stripe signs
the body instead). Deliberately not atomic: see `credits.billing.webhooks`."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from credits.billing import webhooks


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    outcome = webhooks.receive(body=request.body, signature=request.headers.get("Stripe-Signature"))
    return JsonResponse(outcome.body, status=outcome.status_code)
