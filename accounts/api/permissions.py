"""Who may call the API for an organization: an API key on a plan with API access, or a
logged-in member (the session's active organization). DRF's default permission class."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.models import APIKey
from accounts.selectors import api_access_check
from config.errors import AuthenticationFailed, PermissionDenied


def request_api_key(request) -> APIKey | None:
    """The APIKey a request authenticated with, or None for sessions."""
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
        if request_api_key(request) is not None:
            api_access_check(organization=organization)
        return True
