"""Web views of generations, one module per page: `generate` (the generate page: model picker
with prices, a params form built from the model's JSON Schema, a job panel that follows the job
through htmx polling), `job` (the panel's status polling, a job's detail page with its status
log and ledger entries, cancel) and `history` (filters, keyset pagination). `_common` is how a
job reads on all of them.

Thin, like accounts.views and credits.views: submission and cancel go through
`generations.services` (the same calls as the API), reads through the org-scoped
`generations.selectors`; another tenant's job is a 404. Every page works without JavaScript:
the generate form is a plain POST followed by a redirect, the history's filters and page links
are plain GETs; htmx requests get the page fragment back instead.
"""

from generations.views.generate import generate
from generations.views.history import job_list
from generations.views.job import job_cancel, job_detail, job_status

__all__ = ["generate", "job_cancel", "job_detail", "job_list", "job_status"]
