"""DRF permission classes that need no app (the organization ones live in
`accounts.api.permissions`)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from config.errors import AuthenticationFailed, PermissionDenied


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
