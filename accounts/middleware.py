"""Sets `request.organization` and `request.membership` for browser users.

The active organization is kept in the session; users in several organizations switch it
with the org switcher. API-key callers get theirs from the key (accounts.api.authentication).
Both are None for anonymous requests.
"""

from __future__ import annotations

from accounts.models import Membership

SESSION_KEY = "organization_id"


def active_membership(request) -> Membership | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("organization").filter(user=user)
    wanted = request.session.get(SESSION_KEY)
    chosen = memberships.filter(organization_id=wanted).first() if wanted is not None else None
    if chosen is None:
        chosen = memberships.order_by("created_at", "pk").first()
        if chosen is not None:
            request.session[SESSION_KEY] = chosen.organization_id
    return chosen


class OrganizationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = active_membership(request)
        request.organization = request.membership.organization if request.membership else None
        return self.get_response(request)


class LoginThrottleMiddleware:
    """A login refused by the throttle (`accounts.backends.ThrottledModelBackend` set
    `request.login_retry_after`) is answered 429 with Retry-After; the page is the login form
    again, saying when to try again."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        wait = getattr(request, "login_retry_after", 0)
        if wait and response.status_code == 200:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
