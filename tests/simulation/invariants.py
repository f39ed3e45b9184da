"""What must hold after every seed has settled, whatever the faults were."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from django.db.models import Count, DecimalField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from credits.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from credits.selectors import ledger_drift
from generations.models import Job, JobStatus
from generations.services.execution import run_external_id
from infra_costs.models import GpuRun

TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
# A hold given back in full: released, or swept as stale (expired).
GIVEN_BACK = {HoldStatus.RELEASED, HoldStatus.EXPIRED}


def snapshot(world) -> dict:
    """Each organization's account before the seed: balance, held, and its last ledger entry
    (the grants after it are the seed's: auto top-ups, tests/simulation/billing.py)."""
    last = LedgerEntry.objects.order_by("-id").values("id")[:1]
    return {  # one statement: the accounts, and the last entry as a subquery
        a.organization_id: (a.pk, a.balance, a.held, a.last)
        for a in CreditAccount.objects.filter(organization__in=world.orgs).annotate(
            last=Coalesce(Subquery(last), Value(0))
        )
    }


def _sum_of(rows, column: str):
    """Σ `column` of `rows` for the outer account (0 when none), as a subquery."""
    total = rows.filter(account_id=OuterRef("pk")).values("account_id").annotate(s=Sum(column))
    return Coalesce(Subquery(total.values("s")), Value(Decimal(0)), output_field=DecimalField())


def _entries_of_hold(kind: str):
    """How many `kind` entries the outer job's hold has, as a subquery."""
    entries = (
        LedgerEntry.objects.filter(hold_id=OuterRef("hold_id"), kind=kind)
        .values("hold_id")
        .annotate(n=Count("id"))
    )
    return Coalesce(Subquery(entries.values("n")), Value(0))


def check(sim, before: dict) -> list[str]:
    v: list[str] = list(sim.crashes)  # 0. no task crashes with an unexpected error
    # The seed's jobs with their holds, and each hold's capture and release entries counted
    # (invariant 2), in one statement.
    jobs = list(
        Job.objects.filter(pk__in=sim.jobs)
        .select_related("hold")
        .annotate(
            captures=_entries_of_hold(EntryKind.CAPTURE),
            releases=_entries_of_hold(EntryKind.RELEASE),
        )
    )
    by_id = {str(j.pk): j for j in jobs}

    # 1. every job terminal after settling
    for job in jobs:
        if job.status not in TERMINAL:
            v.append(f"job {job.pk} still {job.status} after settling (attempts {job.attempts})")

    # 2. at most one capture per hold, never both captured and released
    hold_ids = [j.hold_id for j in jobs if j.hold_id]
    for job in jobs:
        if not job.hold_id:
            continue
        for kind, n in ((EntryKind.CAPTURE, job.captures), (EntryKind.RELEASE, job.releases)):
            if n > 1:
                v.append(f"hold {job.hold_id} has {n} {kind} entries")
        if job.captures and job.releases:
            v.append(f"hold {job.hold_id} was both captured and released")

    # 3. Σ charged == balance decrease == Σ capture entries, per organization — one statement
    #    for every account's figures (its balance and held, the seed's grants and captures,
    #    its open holds)
    last_entry = min(last for *_, last in before.values())
    accounts = {
        a.organization_id: a
        for a in CreditAccount.objects.filter(organization_id__in=before).annotate(
            granted=_sum_of(
                LedgerEntry.objects.filter(kind=EntryKind.GRANT, id__gt=last_entry),
                "balance_delta",
            ),
            captured=_sum_of(
                LedgerEntry.objects.filter(kind=EntryKind.CAPTURE, hold_id__in=hold_ids),
                "balance_delta",
            ),
            open_holds=_sum_of(CreditHold.objects.filter(status=HoldStatus.HELD), "amount"),
        )
    }
    for org_id, (_account_id, balance, held, _last) in before.items():
        account = accounts[org_id]
        charged = sum(
            (j.credits_charged or Decimal(0)) for j in jobs if j.organization_id == org_id
        )
        decrease = balance - account.balance + account.granted
        captured = -account.captured
        open_holds = account.open_holds
        if charged != decrease:
            v.append(f"org {org_id}: jobs charged {charged} but the balance fell by {decrease}")
        if captured != decrease:
            v.append(f"org {org_id}: captures sum to {captured}, the balance fell by {decrease}")
        # 4. held == Σ open holds (and, all jobs terminal, nothing of this seed still held)
        if account.held != open_holds:
            v.append(f"org {org_id}: held {account.held} != open holds {open_holds}")
        if account.held != held:
            v.append(f"org {org_id}: held went from {held} to {account.held} after settling")

    # 5. check_ledger clean
    for drift in ledger_drift(account_ids=[a for a, *_ in before.values()]):
        v.append(f"ledger drift: {drift}")

    # 6. one GPU-run row per attempt, none left running; the charge matches the outcome and
    #    the pinned price
    runs = {
        r.external_id: r
        for r in GpuRun.objects.filter(
            external_id__regex=r"^(" + "|".join(sim.jobs or ["-"]) + r")(#\d+)?$"
        )
    }
    per_job = Counter(rid.split("#")[0] for rid in runs)
    for job in jobs:
        expected = {run_external_id(job, n) for n in range(1, job.attempts + 1)}
        actual = {rid for rid in runs if rid.split("#")[0] == str(job.pk)}
        if actual != expected or per_job[str(job.pk)] != job.attempts:
            v.append(f"job {job.pk}: {job.attempts} attempt(s) but GPU runs {sorted(actual)}")
        for rid in actual:
            if runs[rid].status == "running":
                v.append(f"GPU run {rid} still running after settling")
        hold = job.hold
        if hold is not None:
            if job.status == JobStatus.SUCCEEDED and hold.status != HoldStatus.CAPTURED:
                v.append(f"job {job.pk} succeeded but its hold is {hold.status}")
            if job.status == JobStatus.CANCELLED and hold.status not in GIVEN_BACK:
                v.append(f"job {job.pk} cancelled but its hold is {hold.status}")
            if job.status == JobStatus.FAILED and hold.status not in (
                GIVEN_BACK if job.credits_charged == 0 else {HoldStatus.CAPTURED}
            ):
                v.append(
                    f"job {job.pk} failed charging {job.credits_charged} but its hold is "
                    f"{hold.status}"
                )
            if job.credits_held != sim.pinned.get(str(job.pk), job.credits_held):
                v.append(
                    f"job {job.pk} held {job.credits_held}, the price at its submission was "
                    f"{sim.pinned[str(job.pk)]}"
                )

    # 7. completed GPU work is recorded: an attempt that finished on the GPU while it was the
    #    job's current attempt, on a worker that stayed alive, ends with the GPU's outcome — not
    #    a `worker_lost` lapse that throws the work away (issue 13, "finish what the GPU
    #    finished")
    for (job_id, attempt), outcome in sim.completed.items():
        if (job_id, attempt) in sim.died:
            continue
        job = by_id.get(job_id)
        if job is None or job.error_code == "hold_expired":
            # The hold was swept during a very long attempt: nothing can be charged, the job
            # fails released by design (docs/generations.md, "Nothing lost").
            continue
        run = runs.get(run_external_id(job, attempt))
        if run is not None and run.status != outcome:
            v.append(
                f"job {job_id} attempt {attempt} {outcome} on the GPU but was recorded "
                f"{run.status} (job {job.status}"
                + (f", {job.error_code}" if job.error_code else "")
                + ")"
            )
    return v


def capture_counts(hold_ids) -> dict:
    return dict(
        LedgerEntry.objects.filter(hold_id__in=hold_ids, kind=EntryKind.CAPTURE)
        .values_list("hold_id")
        .annotate(n=Count("id"))
    )
