"""Deliberately broken variants of the services, to prove the simulation finds bugs (each one an
`extra_patches` for `harness.run_seed`). None of them is used outside the tests."""

from __future__ import annotations

from django.db import transaction

from credits import ledger
from credits.models import CreditAccount
from generations.models import Job
from generations.services import execution


def capture_twice_on_redelivery(patches, sim) -> None:
    """A finish that doesn't know it is late: when an attempt that lost the job (its lease
    lapsed, the job was requeued or finished by another attempt) comes back with a success, it
    charges the hold again — a capture that is not idempotent across deliveries."""
    real_finish = execution._finish

    def broken_finish(job_id, *, attempt, outcome, error, worker, **kwargs):
        result = real_finish(
            job_id, attempt=attempt, outcome=outcome, error=error, worker=worker, **kwargs
        )
        if result == "stale" and error is None:
            with transaction.atomic():
                job = Job.objects.select_related("hold").get(pk=job_id)
                if job.hold_id:
                    account = CreditAccount.objects.get(pk=job.hold.account_id)
                    ledger.adjust(
                        account=account,
                        amount=-job.credits_held,
                        reason=f"capture of job {job_id}",
                        idempotency_key=f"capture-{job_id}-{attempt}-{len(sim.trace)}",
                    )
                    sim.log(f"  BROKEN: charged {str(job_id)[:8]} again (late attempt {attempt})")
        return result

    patches.set(execution, "_finish", sim.finish_wrapper(broken_finish))


def finish_without_retry(patches, sim) -> None:
    """The finish as it was before issue 13: one try, no retry on a fresh connection, no spool
    — a connection lost in the terminal transaction leaves the job running until its lease
    lapses, and the work the GPU completed is thrown away (`worker_lost` or another attempt)."""

    def once(job_id, *, attempt, outcome, error, worker, **kwargs):
        return execution._finish(
            job_id, attempt=attempt, outcome=outcome, error=error, worker=worker
        )

    patches.set(execution, "_finish_recorded", once)


def grant_twice_on_repeated_webhook(patches, sim) -> None:
    """A top-up whose payment is recorded without looking at what was already granted: each
    time a PaymentIntent's success is processed again (the charge's own answer, then the
    `payment_intent.succeeded` webhook, or a webhook retried), the purchase's credits are
    granted again — money out of nothing. Only billing seeds (`billing.drives_billing`) can
    catch it."""
    from credits.billing import topup
    from credits.billing.models import Purchase
    from credits.models import GrantSource

    real_update = topup.payment_intent_update

    def broken_update(*, purchase_id, intent, now):
        already = Purchase.objects.filter(pk=purchase_id, grant__isnull=False).exists()
        purchase = real_update(purchase_id=purchase_id, intent=intent, now=now)
        if already and intent.get("status") == "succeeded":
            ledger.grant_create(
                account=CreditAccount.objects.get(organization_id=purchase.organization_id),
                amount=purchase.credits,
                source=GrantSource.PURCHASE,
                idempotency_key=f"broken-grant-{purchase.pk}-{len(sim.trace)}",
                reference=f"{purchase.get_kind_display()} #{purchase.pk}",
                now=now,
            )
            sim.log(f"  BROKEN: granted top-up #{purchase.pk} again")
        return purchase

    patches.set(topup, "payment_intent_update", broken_update)
