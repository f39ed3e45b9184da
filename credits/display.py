"""How a ledger entry reads on a page: one place for the credits ledger page and the job page
of the generations app (which show the same entries)."""

from __future__ import annotations

from config.web.formats import format_credits
from credits.models import EntryKind, LedgerEntry


def entry_row(entry: LedgerEntry) -> dict:
    """How one entry reads in the table. Posting kinds show their effect on the balance; hold
    and release show their effect on what is available (a hold sets credits aside)."""
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
        "amount_text": format_credits(shown, exact=True, signed=True),
        "note": note,
        "title": title,
        "sign": "neg" if shown < 0 else "pos" if shown > 0 else "zero",
        "reference": reference,
        "reference_kind": reference_kind,
    }
