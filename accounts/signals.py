"""Signals other apps subscribe to, so accounts never imports the apps above it."""

from django.dispatch import Signal

# Sent inside the transaction that opens a subscription period (a new subscription, a plan
# change or a renewal). Arguments: subscription, previous_end (datetime | None).
subscription_period_opened = Signal()
