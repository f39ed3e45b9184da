"""`manage.py unit_costs --start DATE --end DATE [--window day|hour]
[--idle-policy weighted|separate] [--format table|json|csv] [--timezone TZ]
[--csv-table models|pools|stages]`."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from config.errors import ServiceError
from infra_costs import report
from infra_costs.allocation import IDLE_POLICIES, unit_cost_report
from infra_costs.periods import WINDOWS


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = (
        "Unit costs of a period (spec §3): infrastructure cost per pool (uptime, busy, idle) "
        "allocated to models by their jobs' running time, with idle capacity included. "
        "The period is [start, end) in local dates of --timezone."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--start", required=True, metavar="DATE", help="First day (YYYY-MM-DD)."
        )
        parser.add_argument(
            "--end", required=True, metavar="DATE", help="Day after the last one (exclusive)."
        )
        parser.add_argument("--window", choices=WINDOWS, default="day")
        parser.add_argument("--idle-policy", choices=IDLE_POLICIES, default="weighted")
        parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
        parser.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC).")
        parser.add_argument(
            "--csv-table",
            choices=("models", "pools", "stages"),
            default="models",
            help="Which table --format csv writes (default models; stages: the pipeline "
            "stage lines per model).",
        )

    def handle(self, *args, **options):
        try:
            data = unit_cost_report(
                _date(options["start"]),
                _date(options["end"]),
                window=options["window"],
                idle_policy=options["idle_policy"],
                timezone=options["timezone"],
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        csv = {
            "models": report.as_csv,
            "pools": report.pools_as_csv,
            "stages": report.stages_as_csv,
        }[options["csv_table"]]
        render = {"table": report.as_table, "json": report.as_json, "csv": csv}
        self.stdout.write(
            render[options["format"]](data), ending="" if options["format"] == "csv" else "\n"
        )
