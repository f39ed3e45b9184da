"""`manage.py recommend_capacity --pool POOL [--weeks 4] [--buffer 0.2] [--percentile 90]
[--fit sla|percentile] [--end DATE] [--format table|json]` — spec §3 "Capacity
recommendation", method in `infra_costs.capacity` and docs/capacity.md."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from config.errors import ServiceError
from infra_costs import capacity


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = (
        "Recommend a pool's schedule from its last weeks of jobs (spec §3): busy node-hours per "
        "local clock hour → per hour-of-week demand = a high percentile across the weeks → "
        "nodes = max(min_nodes, ceil(demand × (1 + buffer))) → cron set-points in the pool's "
        "time zone. Reports the cost per week of the current schedule and of the "
        "recommendation (hourly rate in force now) and a FIFO replay of the same weeks' jobs "
        "on both (p50/p95 queue wait, share of jobs over the pool's SLA). The window is the "
        "--weeks weeks before --end (default: the start of the current UTC day)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True, help="Pool slug, e.g. a100.")
        parser.add_argument(
            "--weeks",
            type=int,
            default=capacity.DEFAULT_WEEKS,
            help=f"Weeks of history (1–{capacity.MAX_WEEKS}, default %(default)s).",
        )
        parser.add_argument(
            "--buffer",
            default=str(capacity.DEFAULT_BUFFER),
            help="Head-room over the demand, a fraction ≥ 0 (default %(default)s = 20%%).",
        )
        parser.add_argument(
            "--percentile",
            default=str(capacity.DEFAULT_PERCENTILE),
            help="Percentile of each hour-of-week's busy nodes across the weeks "
            "(0–100, default %(default)s).",
        )
        parser.add_argument(
            "--fit",
            choices=("sla", "percentile"),
            default="sla",
            help="sla (default): the formula's nodes, then trimmed where the replay shows the "
            "head-room is not needed while the p95 wait stays within the pool's SLA; "
            "percentile: the formula alone (spec §3).",
        )
        parser.add_argument(
            "--end",
            metavar="DATE",
            help="UTC date the window ends at (exclusive, YYYY-MM-DD; default today).",
        )
        parser.add_argument(
            "--format",
            choices=("table", "json"),
            default="table",
            help="table: human-readable with a 7×24 grid; json: the spec's JSON (costs are "
            "USD per week, decimals as strings).",
        )

    def handle(self, *args, **options):
        try:
            rec = capacity.recommend_capacity(
                options["pool"],
                weeks=options["weeks"],
                buffer=options["buffer"],
                percentile=options["percentile"],
                end=_date(options["end"]) if options["end"] else None,
                fit=options["fit"],
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        render = capacity.as_json if options["format"] == "json" else capacity.as_table
        self.stdout.write(render(rec))
