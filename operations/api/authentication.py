"""`Authorization: Bearer gpus_…`: a staff API token (`operations.models.StaffAPIToken`).

Registered first in REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES (by dotted path: config
imports no app), so every staff endpoint (`config.api.permissions.IsStaff`) accepts it, the
exports and `/api/v1/costs/unit-costs/` included. Any other Bearer value is left to the
organization API keys' class.

A token authenticates as its staff user, never as an organization: `request.organization`
is cleared, so organization-scoped endpoints answer 403 to it."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication

from config.errors import AuthenticationFailed
from operations.tokens.selectors import is_staff_token, staff_token_from_raw
from operations.tokens.services import staff_token_touch


class StaffTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != self.keyword.lower() or not is_staff_token(raw):
            return None
        token = staff_token_from_raw(raw_token=raw)
        if token is None:
            raise AuthenticationFailed("Invalid or revoked staff token.")
        staff_token_touch(token=token)
        request._request.organization = None
        request._request.membership = None
        return (token.user, token)

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class StaffTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "operations.api.authentication.StaffTokenAuthentication"
    name = "staffToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A staff API token (`manage.py staff_token create`), staff endpoints "
            "only.",
        }
