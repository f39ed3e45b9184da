"""Per-API-key rate limit from the organization's plan (DRF's default throttle class).

Browser sessions get API_SESSION_RATE_LIMIT_PER_MIN per user. The count itself is the
project's Redis window counter, `config.api.throttling.hit`.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from accounts.api.permissions import request_api_key
from config.api.throttling import hit
from config.errors import RateLimited, limit_details


def plan_rate_limit(organization) -> int | None:
    plan = getattr(getattr(organization, "subscription", None), "plan", None)
    return plan.api_rate_limit_per_min if plan is not None else None


class APIKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        key = request_api_key(request)
        if key is not None:
            limit = plan_rate_limit(key.organization)
            bucket = f"key:{key.pk}"
        elif request.user is not None and request.user.is_authenticated:
            limit = settings.API_SESSION_RATE_LIMIT_PER_MIN
            bucket = f"user:{request.user.pk}"
        else:
            return True
        if limit is None:
            return True
        allowed, reset = hit(bucket, limit)
        if not allowed:
            raise RateLimited(
                f"Rate limit of {limit} requests per minute exceeded. Retry in {reset} s.",
                headers={"Retry-After": str(reset)},
                **limit_details(
                    name="rate_limit",
                    value=limit,
                    used=limit,
                    resets_at=timezone.now() + timedelta(seconds=reset),
                ),
            )
        return True
