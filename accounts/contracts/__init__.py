"""Enterprise contracts per organization (docs/pricing.md, "Enterprise contracts").

A contract is versioned like prices: every change is a new `Contract` row (version n+1) with
who and why; the latest version is the terms. Its terms are in force between `starts_at` and
`ends_at`. While in force, its `credits_per_period` (when set) is granted at each period open
INSTEAD of the plan's monthly credits, and its overage cap / price (when set) replace the
plan's. Per-model price overrides live in `generations.overrides` (generations owns prices).
"""
