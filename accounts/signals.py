"""Signals other apps subscribe to, so accounts never imports the apps above it."""

from django.dispatch import Signal

# Sent inside the transaction that opens a subscription period: a new subscription, a plan
# change or a renewal. Arguments: subscription, previous_start and previous_end (the period
# that just ended, or None for a new subscription) and now (when it happened).
subscription_period_opened = Signal()

# Sent after a sign-up's user and organization are committed (accounts.views.signup_confirm).
# Arguments: organization and referral_code (the `?ref=` the sign-up began with, or "").
organization_signed_up = Signal()
