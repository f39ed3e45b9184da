"""`manage.py import_jobs FILE [--skip-invalid]`.

CSV columns: `external_id,model,node,started_at,finished_at,status`.
"""

from infra_costs.management.commands._import_base import ImportCommand


class Command(ImportCommand):
    kind = "jobs"
    help = (
        "Import historical GPU jobs (status succeeded|failed|cancelled; the node must exist). "
        "CSV columns: external_id,model,node,started_at,finished_at,status; "
        "timestamps ISO 8601 with offset. "
        "All-or-nothing unless --skip-invalid; idempotent."
    )
