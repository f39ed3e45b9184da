"""The authentication backend: Django's ModelBackend behind the login throttle."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts import login_throttle
from config.web.http import client_address


class ThrottledModelBackend(ModelBackend):
    """Email and password, refused while the email or the client address is locked by
    `accounts.login_throttle` (the password is then not even checked). Sets
    `request.login_retry_after` (seconds) when a login is refused for that reason: the login
    forms show the throttle's message and `LoginThrottleMiddleware` answers 429.

    Calls without a request (the test client's `login()`, scripts) are not throttled."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return super().authenticate(request, username, password, **kwargs)
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        email = (username or "").strip().lower()
        address = client_address(request)
        wait = login_throttle.login_lock_remaining(email=email, address=address)
        if wait:
            request.login_retry_after = wait
            raise PermissionDenied("login throttled")  # authenticate() stops here
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            wait = login_throttle.login_failure_record(email=email, address=address)
            if wait:
                request.login_retry_after = wait
        else:
            login_throttle.login_success_record(email=email)
        return user
