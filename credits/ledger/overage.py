"""Overage settlement: a paid overage invoice takes the debt off the account."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from config.errors import ValidationError
from credits.ledger._core import ZERO, allocate, entry_write, move_account, now_or, replayed
from credits.models import EntryKind, LedgerEntry, OverageRecord, OverageStatus


def overage_settle(
    *, record: OverageRecord, actor=None, now: datetime | None = None, reason: str = ""
) -> LedgerEntry:
    """The overage invoice was paid: the debt leaves the account (balance += credits). Once:
    a settled record returns its settlement entry; a void one is an error."""
    now = now_or(now)
    key = f"overage:{record.pk}"
    try:
        with transaction.atomic():
            record = OverageRecord.objects.select_for_update().get(pk=record.pk)
            if record.settlement_entry_id:
                return record.settlement_entry
            if record.status == OverageStatus.VOID:
                raise ValidationError("A void overage record cannot be settled.")
            posted = move_account(
                record.account_id, balance_delta=record.credits, held_delta=ZERO, now=now
            )
            entry = entry_write(
                record.account_id,
                posted,
                kind=EntryKind.OVERAGE,
                amount=record.credits,
                balance_delta=record.credits,
                held_delta=ZERO,
                key=key,
                now=now,
                actor=actor,
                reason=reason or f"overage of {record.period_start:%Y-%m-%d} period paid",
            )
            allocate(entry, [(None, record.credits)])
            record.status = OverageStatus.PAID
            record.settlement_entry = entry
            record.save(update_fields=["status", "settlement_entry", "updated_at"])
            return entry
    except IntegrityError:
        entry = replayed(record.account_id, key, kind=EntryKind.OVERAGE, amount=record.credits)
        if entry is None:
            raise
        return entry
