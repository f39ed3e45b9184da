"""Billing errors. They subclass the project's error hierarchy (`config.errors`), so the API, the
web UI and commands render them with the spec's codes; `retryable` tells a caller whether
trying again later may succeed."""

from __future__ import annotations

from config.errors import IdempotencyConflict, NotFound, ServerBusy, ValidationError


class PaymentDeclined(ValidationError):
    """The card was declined or needs the customer (authentication) — not retryable as is."""

    title = "Payment declined"
    default_detail = "The payment was declined."
    retryable = False


class StripeRequestInvalid(ValidationError):
    """Stripe refused the request (bad parameters, a state that does not allow it)."""

    title = "Payment provider refused the request"
    retryable = False


class StripeObjectNotFound(NotFound):
    retryable = False


class StripeIdempotencyMismatch(IdempotencyConflict):
    retryable = False


class StripeUnavailable(ServerBusy):
    """Network trouble, rate limiting or a Stripe-side error: try again later."""

    title = "Payment provider unavailable"
    default_detail = "The payment provider could not be reached. Try again later."
    retryable = True


class BillingNotConfigured(ServerBusy):
    title = "Billing not configured"
    default_detail = "Payments are not configured on this server."
    retryable = False


class InvalidSignature(ValidationError):
    """A webhook whose Stripe-Signature does not verify with STRIPE_WEBHOOK_SECRET."""

    title = "Invalid webhook signature"
    retryable = False


# --- Outcomes of webhook handlers (not rendered to users) ----------------------------------------


class RetryLater(Exception):
    """The event depends on another one not processed yet (events arrive out of order): it is
    recorded as failed and processed again later (Stripe's retry or our retry task)."""


class Unprocessable(Exception):
    """The event can never be applied as it is (unknown organization, pack or plan): recorded
    as failed with this message; nothing is granted. Staff may fix the data and reprocess."""
