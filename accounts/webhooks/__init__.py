"""Outbound webhooks (docs/webhooks.md): organizations' endpoints, the outbox of events, and
their signed deliveries with retries.

Lives in `accounts`, the lowest layer, so every app can write an event to the outbox in its own
transaction (`accounts.webhooks.services.webhook_event_emit`).
"""
