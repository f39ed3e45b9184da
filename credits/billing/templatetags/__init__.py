"""The billing template library (`{% load billing_ui %}`), registered by dotted path in
`TEMPLATES["OPTIONS"]["libraries"]` (`credits.billing` is a package of the credits app, not an
app of its own, so Django would not find it by itself)."""
