"""Usage events: metered things the platform does outside generation jobs (storage GB-days,
third-party model calls, LLM tokens), priced per unit by versioned meters and charged to the
ledger exactly once (`POST /api/v1/usage-events/`, see docs/generations.md).

- `models`: `Meter` (slug, unit), `MeterRate` (credits per unit, versioned like model prices),
  `UsageEvent` (one per idempotency key and organization, with its hold);
- `services`: `meter_rate_set` (a new price version) and `usage_events_record` (a batch, all or
  nothing, replays without a second effect);
- `admin`, `api` (view and serializers).
"""
