"""`manage.py import_uptime FILE [--skip-invalid]`.

CSV columns: `node,pool,started_at,ended_at`.
"""

from infra_costs.management.commands._import_base import ImportCommand


class Command(ImportCommand):
    kind = "uptime"
    help = (
        "Import node uptime intervals (unknown nodes are created in the row's pool). "
        "CSV columns: node,pool,started_at,ended_at; "
        "timestamps ISO 8601 with offset. "
        "All-or-nothing unless --skip-invalid; idempotent."
    )
