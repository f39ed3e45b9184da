from django.core.management.base import BaseCommand

from credits.budgets.selectors import budgets_reconcile
from credits.models import CreditAccount
from credits.selectors import ledger_drift


class Command(BaseCommand):
    help = (
        "Verify the credits ledger of every account: balance == sum of posting entries, "
        "held == sum of open holds, each grant's remaining agrees with the entries drawn from "
        "it, available == balance - held == grants remaining - unfunded, and each entry's "
        "balance/held after follow the chain; each budget's reserved == its open holds' "
        "reservations and its use this period == what was captured in it. Exits 1 on any drift."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--org",
            action="append",
            dest="orgs",
            metavar="SLUG",
            help="Only check these organizations (repeatable). Default: every account.",
        )

    def handle(self, *args, orgs=None, **options):
        accounts = CreditAccount.objects.all()
        if orgs:
            accounts = accounts.filter(organization__slug__in=orgs)
        ids = list(accounts.values_list("pk", flat=True)) if orgs else None
        count = accounts.count()
        drifts = ledger_drift(account_ids=ids)
        # Budgets agree with their holds' reservations (credits.budgets: reserved == open
        # reservations, this period's use == what was captured in it).
        budget_orgs = accounts.values_list("organization_id", flat=True) if orgs else None
        drifts += budgets_reconcile(organization_ids=budget_orgs)
        if drifts:
            for drift in drifts:
                self.stderr.write(self.style.ERROR(f"DRIFT {drift}"))
            self.stderr.write(
                self.style.ERROR(f"{len(drifts)} drift(s) found in {count} account(s).")
            )
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(f"Ledger clean: {count} account(s) checked."))
