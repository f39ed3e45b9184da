"""`manage.py import_pools FILE [--skip-invalid]`.

CSV columns: `pool,gpu_type,hourly_rate_usd,effective_from`.
"""

from infra_costs.management.commands._import_base import ImportCommand


class Command(ImportCommand):
    kind = "pools"
    help = (
        "Import node pools and their hourly rate versions (one row per version). "
        "CSV columns: pool,gpu_type,hourly_rate_usd,effective_from; "
        "timestamps ISO 8601 with offset. "
        "All-or-nothing unless --skip-invalid; idempotent."
    )
