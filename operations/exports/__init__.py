"""Exports for analysts: the unit-cost report (models, pools, stages), ledger entries, usage
(jobs per organization, model and day) and margins (per organization, plan and model) as CSV or
Parquet. `datasets` says what each export holds (reads only, reusing the reports' own code);
`formats` writes rows out in bounded memory. Served by the staff API
(`operations.api.views`, staff session or staff API token) and the staff page /staff/exports/.
"""
