from django.core.management.base import BaseCommand, CommandError

from config.errors import ServiceError
from credits.billing.catalog import stripe_sync


class Command(BaseCommand):
    help = (
        "Create or update the Stripe products and prices of every paid plan and active credit "
        "pack (found by our product ids and price lookup keys; idempotent) and store the price "
        "ids on the plans and packs."
    )

    def handle(self, *args, **options):
        try:
            lines = stripe_sync()
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        for line in lines:
            self.stdout.write(str(line))
        changed = sum(1 for line in lines if line.changed)
        self.stdout.write(self.style.SUCCESS(f"{len(lines)} item(s) in sync, {changed} updated."))
