"""Sign-up by email, in two steps, so that signing up never tells whether an address has an
account (as password reset never does).

1. `/signup/` takes an email, a name and an organization name, and always answers "check your
   email". It writes nothing: a new address is emailed a link to finish (`signup_token_make`:
   the three values signed, valid `PASSWORD_RESET_TIMEOUT` seconds); an address that already
   has an account is emailed that someone tried to sign up with it, with links to log in and to
   reset the password. Emails carry nothing the caller typed but the address, and are limited
   per recipient (`SIGNUP_EMAILS_PER_RECIPIENT_PER_HOUR`, beyond which none is sent, silently)
   and per client address (`SIGNUP_REQUESTS_PER_ADDRESS_PER_HOUR`, beyond which the form is
   refused with 429): the form can't be used to mail-bomb or spam anyone.
2. The link (`/signup/confirm/<token>/`, `signup_token_read`) asks for a password, then
   `accounts.services.user_signup` creates the user and their organization and the view signs
   them in. The link proves the address is theirs; it stops working once the account exists.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.urls import reverse

from accounts.models import User
from config.api.throttling import counter_incr, fail_open
from config.errors import RateLimited, ValidationError

_SALT = "accounts.signup"
_HOUR = 3600


@fail_open((0, 0))  # Redis unreachable: sign-up still works, unlimited
def _hourly_count(bucket: str, *, now: float) -> tuple[int, int]:
    """Count one in `bucket` this clock hour: (count, seconds until the hour ends)."""
    window = int(now // _HOUR)
    count = counter_incr(f"signup-limit:{bucket}:{window}", timeout=_HOUR + 5)
    return count, max(1, math.ceil((window + 1) * _HOUR - now))


def signup_token_make(
    *, email: str, name: str, organization_name: str, referral_code: str = ""
) -> str:
    data = {"e": email, "n": name, "o": organization_name}
    if referral_code:
        data["r"] = referral_code
    return signing.dumps(data, salt=_SALT, compress=True)


def signup_token_read(*, token: str) -> dict[str, str]:
    """The sign-up a link carries: {"email", "name", "organization_name", "referral_code"}.
    ValidationError when
    the link is forged, expired or already used (the account exists)."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.PASSWORD_RESET_TIMEOUT)
        signup = {"email": data["e"], "name": data["n"], "organization_name": data["o"]}
        signup["referral_code"] = str(data.get("r", ""))
    except (signing.BadSignature, KeyError, TypeError):
        raise ValidationError("This sign-up link is invalid or too old.") from None
    if User.objects.filter(email__iexact=signup["email"]).exists():
        raise ValidationError("This sign-up link was already used: log in instead.")
    return signup


def user_signup_request(
    *,
    email: str,
    name: str = "",
    organization_name: str,
    client_address: str = "",
    referral_code: str = "",
    now: float | None = None,
) -> None:
    """Email `email` the next step of signing up, or, when it has an account, a note that
    someone tried. Writes nothing but counters; both ways cost one query and one email, so
    neither the answer nor its timing tells them apart. RateLimited (with Retry-After) when
    `client_address` asked too often this hour."""
    now = time.time() if now is None else now
    email = User.objects.normalize_email(email).strip().lower()
    if client_address:
        count, reset = _hourly_count(f"address:{client_address}", now=now)
        if count > settings.SIGNUP_REQUESTS_PER_ADDRESS_PER_HOUR:
            minutes = math.ceil(reset / 60)
            raise RateLimited(
                f"Too many sign-ups from your network; try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}.",
                headers={"Retry-After": str(reset)},
            )
    recipient = hashlib.sha256(email.encode("utf-8", "replace")).hexdigest()[:32]
    if _hourly_count(f"recipient:{recipient}", now=now)[0] > (
        settings.SIGNUP_EMAILS_PER_RECIPIENT_PER_HOUR
    ):
        return  # enough mail to that address for now; the answer stays the same
    site = settings.SITE_URL.rstrip("/")
    if User.objects.filter(email__iexact=email).exists():
        subject = f"Sign-up attempt on {settings.SITE_NAME}"
        lines = [
            "Hello,",
            "",
            f"Someone (hopefully you) tried to create a {settings.SITE_NAME} account with this "
            "address. You already have one.",
            "",
            f"Log in: {site}{reverse('login')}",
            f"Forgot your password? Choose a new one: {site}{reverse('password_reset')}",
            "",
            "If it was not you, ignore this email: nothing has changed.",
        ]
    else:
        token = signup_token_make(
            email=email,
            name=name,
            organization_name=organization_name,
            referral_code=referral_code,
        )
        subject = f"Finish creating your {settings.SITE_NAME} account"
        lines = [
            "Hello,",
            "",
            f"To finish creating your {settings.SITE_NAME} account, choose a password here:",
            "",
            f"{site}{reverse('signup_confirm', kwargs={'token': token})}",
            "",
            "The link works for a few days. If you did not sign up, ignore this email: no "
            "account is created.",
        ]
    send_mail(
        subject=subject, message="\n".join(lines) + "\n", from_email=None, recipient_list=[email]
    )
