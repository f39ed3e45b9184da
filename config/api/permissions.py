from __future__ import annotations

from rest_framework.permissions import BasePermission

from config.errors import AuthenticationFailed, PermissionDenied


def request_api_key(request):
    """The APIKey a request authenticated with, or None for sessions."""
    from accounts.models import APIKey

    return request.auth if isinstance(request.auth, APIKey) else None


class IsOrganizationMember(BasePermission):
    """A caller acting for an organization: an API key, or a logged-in member (the active
    organization of the session). API keys need a plan with API access."""

    def has_permission(self, request, view) -> bool:
        organization = getattr(request._request, "organization", None)
        if organization is None:
            if request.user is not None and request.user.is_authenticated:
                raise PermissionDenied("You are not a member of any organization.")
            raise AuthenticationFailed("Authentication credentials were not provided.")
        key = request_api_key(request)
        if key is not None:
            plan = getattr(getattr(organization, "subscription", None), "plan", None)
            if plan is None or not plan.api_access:
                raise PermissionDenied(
                    "Your plan does not include API access. Upgrade to use API keys.",
                    reason="api_access",
                )
        return True


class IsStaff(BasePermission):
    """Staff users only (cost data). API keys are never staff."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            if request.auth is not None:
                raise PermissionDenied("Staff only.")
            raise AuthenticationFailed("Authentication credentials were not provided.")
        if not user.is_staff:
            raise PermissionDenied("Staff only.")
        return True
