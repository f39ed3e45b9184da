"""API authentication: `Authorization: Bearer <api key>` or a browser session.

The REST_FRAMEWORK setting names these classes by dotted path (config imports no app)."""

from __future__ import annotations

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication

from accounts.selectors import api_key_from_raw
from accounts.services import api_key_touch
from config.errors import AuthenticationFailed


class APIKeyAuthentication(authentication.BaseAuthentication):
    """Organization API keys. Success sets `request.auth` to the APIKey and
    `request.organization` to its organization; `request.user` stays anonymous (None)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        raw_key = raw_key.strip()
        if not raw_key or " " in raw_key:
            raise AuthenticationFailed("Malformed Authorization header: use 'Bearer <api key>'.")
        key = api_key_from_raw(raw_key=raw_key)
        if key is None:
            raise AuthenticationFailed("Invalid or revoked API key.")
        api_key_touch(api_key=key)
        request._request.organization = key.organization
        request._request.membership = None
        return (None, key)

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


class SessionAuthentication(authentication.SessionAuthentication):
    """Browser sessions (with CSRF on unsafe methods). The organization is the one picked in
    the web UI's switcher, set by accounts.middleware.OrganizationMiddleware."""


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.APIKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An organization API key, created on the web UI's API keys page.",
        }


class SessionAuthenticationScheme(SessionScheme):
    """Documents our SessionAuthentication subclass (drf-spectacular only knows DRF's own)."""

    target_class = "accounts.api.authentication.SessionAuthentication"
