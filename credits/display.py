"""How a ledger entry reads on a page: one place for the credits ledger page and the job page
of the generations app (which show the same entries).

A job's hold reference links to the job's page. credits imports nothing of generations: the job
is reached through the hold's reverse one-to-one (`CreditHold.job`, select it with
`select_related("hold__job")`) and its page by URL name, and only a job of the organization
looking at the page gets a link."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.urls import NoReverseMatch, reverse

from config.web.formats import format_credits
from credits.models import EntryKind, LedgerEntry

JOB_HOLD_PREFIX = "job:"  # a job's hold key: "job:<job id>"


def _job_url(entry: LedgerEntry, organization) -> str:
    """The page of the job whose hold this entry moved, when it is `organization`'s."""
    if organization is None or not entry.hold_id:
        return ""
    hold = entry.hold
    if not hold.key.startswith(JOB_HOLD_PREFIX):
        return ""
    try:
        job = hold.job  # the reverse one-to-one of generations.Job.hold
    except (ObjectDoesNotExist, AttributeError):
        return ""
    if job.organization_id != organization.pk:
        return ""
    try:
        return reverse("generations:job", args=[job.pk])
    except NoReverseMatch:
        return ""


def entry_row(entry: LedgerEntry, *, organization=None) -> dict:
    """How one entry reads in the table. Posting kinds show their effect on the balance; hold
    and release show their effect on what is available (a hold sets credits aside). Given the
    `organization` looking at it, a job's hold reference gets the job page's URL."""
    note = ""
    if entry.kind == EntryKind.HOLD:
        shown, note = -entry.held_delta, "held"
        title = "Set aside for a job: lowers available credits, not the balance."
    elif entry.kind == EntryKind.RELEASE:
        shown, note = -entry.held_delta, "released"
        title = "A hold given back: available again, the balance never moved."
    elif entry.kind == EntryKind.CAPTURE:
        shown = entry.balance_delta
        title = "Charged from its hold: the balance and the held amount both go down."
    else:
        shown = entry.balance_delta
        title = "Changes the balance."
    if entry.hold_id:
        reference, reference_kind = entry.hold.key, "Hold"
    elif entry.grant_id:
        grant = entry.grant
        reference = grant.get_source_display()
        if grant.reference:
            reference += f" · {grant.reference}"
        reference_kind = "Grant"
    else:
        reference, reference_kind = "", ""
    return {
        "entry": entry,
        "amount": shown,
        "amount_text": format_credits(shown, signed=True),
        "note": note,
        "title": title,
        "sign": "neg" if shown < 0 else "pos" if shown > 0 else "zero",
        "reference": reference,
        "reference_kind": reference_kind,
        "reference_url": _job_url(entry, organization),
    }
