"""`manage.py staff_token create --user EMAIL --name NAME` (prints the token once),
`staff_token revoke --prefix PREFIX` and `staff_token list [--user EMAIL]`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from config.errors import ServiceError
from operations.models import StaffAPIToken
from operations.tokens import services
from operations.tokens.selectors import STAFF_TOKEN_PREFIX


class Command(BaseCommand):
    help = (
        "Staff API tokens for the staff API (exports, the unit-cost report): create one for a "
        "staff user (the token is printed once, only its digest is stored), revoke one by its "
        "prefix, or list them."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token for a staff user")
        create.add_argument("--user", required=True, help="the staff user's email")
        create.add_argument("--name", required=True, help="what the token is for")
        revoke = sub.add_parser("revoke", help="revoke a token")
        revoke.add_argument(
            "--prefix", required=True, help=f"the 8 hex characters after {STAFF_TOKEN_PREFIX}"
        )
        listing = sub.add_parser("list", help="list tokens")
        listing.add_argument("--user", help="only this user's tokens (email)")

    def handle(self, *args, **options):
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options) -> None:
        user = User.objects.filter(email__iexact=options["user"].strip()).first()
        if user is None:
            raise CommandError("No user with that email.")
        try:
            _, raw = services.staff_token_create(user=user, name=options["name"], actor=None)
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stderr.write("Token created. Copy it now, it is not shown again:")
        self.stdout.write(raw)

    def _revoke(self, options) -> None:
        prefix = options["prefix"].strip().removeprefix(STAFF_TOKEN_PREFIX).split("_")[0]
        token = StaffAPIToken.objects.filter(prefix=prefix).first()
        if token is None:
            raise CommandError("No token with that prefix.")
        was_active = token.is_active
        services.staff_token_revoke(token=token, actor=None)
        self.stdout.write("Revoked." if was_active else "Already revoked.")

    def _list(self, options) -> None:
        tokens = StaffAPIToken.objects.select_related("user").order_by("-created_at")
        if options.get("user"):
            tokens = tokens.filter(user__email__iexact=options["user"].strip())
        for t in tokens:
            state = "active" if t.is_active else f"revoked {t.revoked_at:%Y-%m-%d}"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            self.stdout.write(
                f"{STAFF_TOKEN_PREFIX}{t.prefix}_…  {t.user.email}  {t.name}  {state}  "
                f"last used {used}"
            )
