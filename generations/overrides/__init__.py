"""Per-organization price overrides (enterprise contracts, docs/pricing.md "Price overrides").

An override is a fixed price in credits or a discount % for one model or all models of one
organization, from `effective_from` on. Versioned like prices: never edited, a change is a new
row with who and why (a row with neither a price nor a discount ends the override). The one in
force for (organization, model) at a time is the latest row of that model, else (none, or
ended) the latest all-models row.
Applied in ONE place, `generations.price_tables.price_for(..., organization_id=, at=)`, which
the quote, the submission's hold and the finish's capture all call.
"""
