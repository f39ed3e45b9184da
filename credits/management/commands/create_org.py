"""`manage.py create_org SLUG --plan PLAN [--grant CREDITS] [--api-key] [--name] [--owner]`.

Prints exactly one JSON object on stdout: {"organization": SLUG, "api_key": "<key>" | null}.
Everything is checked before anything is written, and written in one transaction.

A credits command (not an accounts one) because it also grants credits: accounts sits below
credits and imports nothing from it.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import services
from accounts.models import Plan
from config.errors import ServiceError
from credits import services as credit_services
from credits.money import parse_credits


def parse_grant(value: str) -> Decimal:
    """A positive credit amount with at most 3 decimal places, or CommandError."""
    try:
        return parse_credits(value, field="--grant")
    except ServiceError as exc:
        raise CommandError(exc.detail) from None


def grant_credits(*, organization, amount: Decimal) -> None:
    # Inside the command's transaction: the organization, its grant and its key, or nothing.
    credit_services.organization_grant_in_transaction(
        organization=organization,
        amount=amount,
        source="adjustment",
        reason="Initial grant by manage.py create_org",
        idempotency_key=f"create_org:{organization.pk}:grant",
    )


# -------------------------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "Create an organization on a plan, optionally with an owner, a credit grant and an API "
        'key. Prints one JSON object: {"organization": SLUG, "api_key": KEY or null}. '
        "Nothing is written when any argument is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "slug",
            metavar="SLUG",
            help="Unique organization slug: lowercase letters, digits and hyphens.",
        )
        parser.add_argument(
            "--plan",
            required=True,
            metavar="PLAN",
            help="Slug of the plan to subscribe to (e.g. free, starter, creator, studio, "
            "enterprise). A first monthly period starts now.",
        )
        parser.add_argument(
            "--grant",
            metavar="CREDITS",
            help="Also grant this many credits (positive, at most 3 decimal places) to the "
            "organization's credit account, as an adjustment that does not expire.",
        )
        parser.add_argument(
            "--api-key",
            action="store_true",
            help="Also create an API key named 'default' and print its value (shown only once).",
        )
        parser.add_argument(
            "--name", metavar="NAME", help="Display name of the organization (default: SLUG)."
        )
        parser.add_argument(
            "--owner",
            metavar="EMAIL",
            help="Make this user the owner; a new user is created without a usable password "
            "(they set one through password reset). No email is sent.",
        )

    def handle(
        self,
        *args,
        slug: str,
        plan: str,
        grant: str | None,
        api_key: bool,
        name: str | None,
        owner: str | None,
        **options,
    ):
        # 1. Check everything; nothing is written yet.
        amount = parse_grant(grant) if grant is not None else None
        plan_obj = Plan.objects.filter(slug=plan).first()
        if plan_obj is None:
            known = ", ".join(Plan.objects.values_list("slug", flat=True))
            raise CommandError(f"Unknown plan {plan!r}. Plans: {known}.")
        try:
            services.organization_slug_validate(slug=slug)
        except ServiceError as exc:
            raise CommandError(exc.detail) from None

        # 2. Write it all, or nothing.
        raw_key = None
        try:
            with transaction.atomic():
                owner_user = services.user_ensure(email=owner)[0] if owner else None
                organization = services.organization_create(
                    name=name or slug, slug=slug, plan=plan_obj, owner=owner_user
                )
                if amount is not None:
                    grant_credits(organization=organization, amount=amount)
                if api_key:
                    _key, raw_key = services.api_key_create(
                        organization=organization, name="default", actor=None
                    )
        except ServiceError as exc:
            raise CommandError(exc.detail) from None

        self.stdout.write(json.dumps({"organization": organization.slug, "api_key": raw_key}))
